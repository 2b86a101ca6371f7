"""The province's integration adapter of the national portal, over HTTP (docs/protocols.md).

``NationalPortalClient`` logs in once, keeps the session token, and logs in
again when a call answers that the session expired (``error_code`` 401), then
repeats the call once. Outcomes are classed the way delivery needs them:

- ``PortalUnavailable``: HTTP 5xx, a timeout, a refused connection, an answer
  that is not JSON, an HTTP error without the adapter's ``error_code``, a
  failed login: temporary, retry later.
- ``PortalRefused``: any other non-zero ``error_code``: the portal does not
  accept what was sent; ``answer`` keeps the portal's reply for an operator.
"""
import requests

from portal_shared.logs import get_logger

log = get_logger(__name__)

OK_CODES = {"0", "00"}
SESSION_EXPIRED = "401"


class PortalError(Exception):
    pass


class PortalUnavailable(PortalError):
    """The adapter could not be reached or failed on its side: try again later."""


class PortalRefused(PortalError):
    """The adapter refused the request; ``answer`` is its reply."""

    def __init__(self, message, answer):
        super().__init__(message)
        self.answer = answer


class PortalSettings:
    """Connection settings of the adapter; ``configured`` is False without a URL."""

    def __init__(self, url, auth_path="/api/login", integration_path="/api/integration", username="",
                 password="", agency_code="", timeout_seconds=10.0):
        self.url = (url or "").rstrip("/")
        self.auth_path = auth_path or "/api/login"
        self.integration_path = integration_path or "/api/integration"
        self.username = username or ""
        self.password = password or ""
        self.agency_code = agency_code or ""
        self.timeout_seconds = float(timeout_seconds)

    @property
    def configured(self):
        return bool(self.url)

    @classmethod
    def from_config(cls, config):
        from portal_shared.config import get_float, get_str

        return cls(
            url=get_str(config, "NATIONAL_PORTAL_URL"),
            auth_path=get_str(config, "NATIONAL_PORTAL_AUTH_PATH", "/api/login"),
            integration_path=get_str(config, "NATIONAL_PORTAL_INTEGRATION_PATH", "/api/integration"),
            username=get_str(config, "NATIONAL_PORTAL_USERNAME", ""),
            password=get_str(config, "NATIONAL_PORTAL_PASSWORD", ""),
            agency_code=get_str(config, "NATIONAL_PORTAL_AGENCY_CODE", ""),
            timeout_seconds=get_float(config, "PORTAL_SYNC_HTTP_TIMEOUT_SECONDS", 10.0),
        )


def _code(answer):
    return str(answer.get("error_code", "")).strip() if isinstance(answer, dict) else ""


class NationalPortalClient:
    """One client per delivering thread: it owns an HTTP session and the portal session token."""

    def __init__(self, settings, http=None):
        self.settings = settings
        self.http = http or requests.Session()
        self.session_token = None
        self.logins = 0

    # -- the wire ----------------------------------------------------------
    def _post(self, path, body):
        try:
            response = self.http.post(self.settings.url + path, json=body, timeout=self.settings.timeout_seconds)
        except requests.RequestException as exc:
            raise PortalUnavailable(f"adapter unreachable: {type(exc).__name__}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise PortalUnavailable(f"adapter answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise PortalUnavailable(f"adapter answered HTTP {response.status_code} without JSON") from None
        if not isinstance(answer, dict):
            raise PortalUnavailable("adapter answered something other than a JSON object")
        if response.status_code >= 400 and _code(answer) in OK_CODES | {""}:
            if response.status_code != 401:
                # No error code of the adapter's: a proxy or a wrong path, not a verdict on a dossier.
                raise PortalUnavailable(f"adapter answered HTTP {response.status_code}")
            answer = {**answer, "error_code": SESSION_EXPIRED}
        return answer

    def login(self):
        answer = self._post(self.settings.auth_path,
                            {"username": self.settings.username, "password": self.settings.password})
        token = answer.get("session")
        if _code(answer) not in OK_CODES or not token:
            # Wrong credentials are the operator's to fix, not a dossier's fault: keep retrying.
            raise PortalUnavailable(f"login refused: error_code {_code(answer) or '?'}")
        self.session_token = str(token)
        self.logins += 1
        log.info("national_portal_login", logins=self.logins)
        return self.session_token

    def call(self, service, **fields):
        """One operation; returns the answer when ``error_code`` is ok."""
        for attempt in (1, 2):
            if self.session_token is None:
                self.login()
            body = {"session": self.session_token, "madonvi": self.settings.agency_code, "service": service,
                    **fields}
            answer = self._post(self.settings.integration_path, body)
            code = _code(answer)
            if code in OK_CODES:
                return answer
            if code == SESSION_EXPIRED:
                self.session_token = None
                if attempt == 1:
                    continue
                raise PortalUnavailable("session refused right after logging in again")
            message = str(answer.get("message") or "")[:500]
            raise PortalRefused(f"{service} refused: error_code {code}: {message}", answer)
        raise PortalUnavailable("unreachable")  # pragma: no cover (the loop returns or raises)

    # -- the four operations -----------------------------------------------
    def sync_dossiers(self, records, updating):
        return self.call("DongBoHoSoMC", isUpdating="True" if updating else "False", data=list(records))

    def update_progress(self, entries):
        return self.call("CapNhatTienDoHoSoMC", data=list(entries))

    def look_up(self, dossier_code):
        """The dossier as the portal has it, or None when it does not know it."""
        result = self.call("TraCuuHoSo", mahoso=dossier_code).get("result") or []
        if isinstance(result, dict):
            result = [result]
        return result[0] if result else None

    def procedure(self, national_code):
        result = self.call("LayThuTuc", maTTHC=national_code).get("result") or []
        if isinstance(result, dict):
            result = [result]
        return result[0] if result else None
