"""The national portal's integration adapter in the sandbox: portal_sync's fake (``portal_sync.fakes``)
served inside the sandbox's WSGI app, seeded with the procedure catalogue's national codes."""
import json

from werkzeug.wrappers import Response

from dossier.procedures import load_catalogue, parse_national_codes
from portal_sync.fakes import FakeNationalPortal

FAULTS = ("down", "hang", "up", "expire_sessions", "refuse", "accept", "lose")


def catalogue_procedures(path=None):
    """``{national code: {name, field_code, field_name}}`` from the dossier catalogue."""
    return {entry["national_code"] or code: {"name": entry["name"], "field_code": entry["field_code"],
                                             "field_name": entry["field_name"]}
            for code, entry in load_catalogue(path or None, parse=parse_national_codes).items()}


class SandboxNationalPortal(FakeNationalPortal):
    def __init__(self, settings, procedures_file=None):
        super().__init__(username=settings.national_portal_username, password=settings.national_portal_password,
                         agency_code=settings.national_portal_agency_code,
                         auth_path=settings.national_portal_auth_path,
                         integration_path=settings.national_portal_integration_path,
                         procedures=catalogue_procedures(procedures_file))

    def serve(self, request):
        status, answer = self.handle(request.path, request.get_data())
        if status is None:  # a scripted hang: the sandbox answers as a gateway timeout would
            return Response("", status=504)
        return Response(json.dumps(answer, ensure_ascii=False), status=status, mimetype="application/json")

    def fault(self, body):
        """``{"fault": down|hang|up|expire_sessions|refuse|accept|lose, "times": n, "dossier_code": c}``."""
        fault, times, code = body.get("fault"), body.get("times", -1), body.get("dossier_code")
        if fault not in FAULTS:
            return f"fault must be one of {', '.join(FAULTS)}"
        if fault in ("refuse", "lose") and not isinstance(code, str):
            return "dossier_code required"
        if fault in ("down", "hang") and (isinstance(times, bool) or not isinstance(times, int)):
            return "times must be an integer (-1: until up)"
        if fault == "down":
            self.down(times)
        elif fault == "hang":
            self.hang(times)
        elif fault == "refuse":
            self.refuse(code)
        elif fault == "accept":
            self.accept(code if isinstance(code, str) else None)
        elif fault == "lose":
            self.lose(code)
        else:
            getattr(self, fault)()
        return None
