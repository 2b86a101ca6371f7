"""National procedure codes, from the dossier service's procedure catalogue file.

The same file as the dossier service reads (``DOSSIER_PROCEDURES_FILE``, the
sample shipped in the dossier package by default): ``MaTTHC`` is the entry's
``national_code``, else its ``code`` (CONTRACT section 6). The service loads
it once through ``providers.NationalCatalogue``.
"""
from dossier.procedures import load_catalogue, parse_national_codes
from portal_sync.domain.records import NationalProcedure


class NationalCodes:
    def __init__(self, entries):
        self._entries = entries

    @classmethod
    def load(cls, path=None):
        return cls(load_catalogue(path or None, parse=parse_national_codes))

    def procedure_codes(self):
        return list(self._entries)

    def procedure(self, procedure_code, procedure_name=""):
        """The national view of a procedure; an unknown code is reported under its own code."""
        entry = self._entries.get(procedure_code) or {}
        return NationalProcedure(
            national_code=entry.get("national_code") or procedure_code,
            name=entry.get("name") or procedure_name or "",
            field_code=entry.get("field_code") or "",
            field_name=entry.get("field_name") or "",
        )
