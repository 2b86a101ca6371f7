"""Dossier lifecycle service (Nameko name ``dossier``)."""
