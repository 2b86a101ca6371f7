"""The national portal's integration adapter in the sandbox: the fake (``sandbox.fakes.national_portal``)
served inside the sandbox's WSGI app, with the national procedure database of the sandbox's own data
(``data/national_procedures.json``, or the file ``SANDBOX_NATIONAL_PROCEDURES_FILE`` names)."""
import json
from importlib import resources

from sandbox.fakes.national_portal import FakeNationalPortal

FAULTS = ("down", "hang", "up", "expire_sessions", "refuse", "accept", "lose")


class ProceduresFileError(ValueError):
    """A national procedures file the sandbox cannot use; the message says where and why."""


def national_procedures(path=None):
    """``{national code: {name, field_code, field_name}}`` from ``path`` (default: the sandbox's sample)."""
    if path:
        with open(path, encoding="utf-8") as handle:
            text, source = handle.read(), path
    else:
        text = resources.files("sandbox").joinpath("data/national_procedures.json").read_text(encoding="utf-8")
        source = "sandbox/data/national_procedures.json"
    try:
        procedures = json.loads(text).get("procedures")
    except (ValueError, AttributeError):
        raise ProceduresFileError(f"{source}: not a JSON object") from None
    if not isinstance(procedures, dict):
        raise ProceduresFileError(f"{source}: \"procedures\" must map national codes to procedures")
    for code, entry in procedures.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ProceduresFileError(f"{source}: {code}: needs a non-empty \"name\"")
        if any(not isinstance(entry.get(key, ""), str) for key in ("field_code", "field_name")):
            raise ProceduresFileError(f"{source}: {code}: field_code and field_name must be strings")
    return {code: {"name": entry["name"], "field_code": entry.get("field_code", ""),
                   "field_name": entry.get("field_name", "")} for code, entry in procedures.items()}


class SandboxNationalPortal(FakeNationalPortal):
    def __init__(self, settings):
        super().__init__(username=settings.national_portal_username, password=settings.national_portal_password,
                         agency_code=settings.national_portal_agency_code,
                         auth_path=settings.national_portal_auth_path,
                         integration_path=settings.national_portal_integration_path,
                         procedures=national_procedures(settings.national_procedures_file),
                         hang_seconds=settings.hang_seconds)

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
