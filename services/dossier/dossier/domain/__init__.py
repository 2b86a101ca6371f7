"""The dossier domain: plain Python, no Nameko, no SQLAlchemy."""
