"""Who is calling: signed caller tokens on every RPC (CONTRACT section 5).

A caller (the portal's login service, an operator tool, another service of
this backend) sends a JWT in the Nameko context data under ``authorization``
as ``Bearer <token>``: HS256 with ``AUTH_JWT_SECRET``, issuer
``AUTH_JWT_ISSUER`` (default ``portal-auth``), audience ``portal-backend``,
with ``exp``. Claims: ``sub``, ``roles``, ``agencies``, ``id_number``.

``verify`` turns a context value into the ``Caller``, or raises
``Unauthorized``; the services' permission rules raise ``Forbidden``. The
secret is read verbatim from the environment (never through YAML); a
``AUTH_JWT_SECRET`` key in the Nameko config (tests) wins over it. Without a
secret every call is refused. ``ServiceTokens`` are the tokens a service
makes for itself (role ``service``). ``portal-token`` (``main``) signs a token
for an operator.

The Nameko providers over these (``CallerIdentity``, ``ServiceRpcProxy``) are
in ``portal_shared.extensions.auth``.
"""
import argparse
import os
import re
import sys
import time
from dataclasses import dataclass, field

import jwt

from portal_shared.errors import Forbidden, Unauthorized

AUTH_CONTEXT_KEY = "authorization"
AUDIENCE = "portal-backend"
DEFAULT_ISSUER = "portal-auth"
ALGORITHM = "HS256"
ROLES = ("citizen", "officer", "finance", "operator", "service")
CITIZEN_ID = re.compile(r"[0-9]{12}", re.ASCII)
AGENCY_CODE = re.compile(r"[A-Za-z0-9_.-]{1,32}", re.ASCII)
MAX_TOKEN_LENGTH = 4096
SERVICE_TOKEN_SECONDS = 300
# A dev key file `make run` writes when AUTH_JWT_SECRET is unset (never used by the services themselves).
DEV_SECRET_FILE = os.path.join("var", "dev-auth-secret")
MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class Caller:
    """The verified caller of one RPC."""

    subject: str
    roles: frozenset = field(default_factory=frozenset)
    agencies: frozenset = field(default_factory=frozenset)
    id_number: str = None

    def has(self, *roles):
        return any(role in self.roles for role in roles)

    def serves(self, agency_code):
        return agency_code is not None and agency_code in self.agencies

    def is_applicant(self, id_number):
        return self.has("citizen") and self.id_number is not None and self.id_number == id_number


@dataclass(frozen=True)
class AuthSettings:
    secret: str
    issuer: str = DEFAULT_ISSUER

    @property
    def configured(self):
        return bool(self.secret)


def auth_settings(config=None, environ=None):
    """Settings from the Nameko config (tests) or, verbatim, the environment."""
    config = config or {}
    environ = os.environ if environ is None else environ
    secret = config.get("AUTH_JWT_SECRET")
    if secret is None:
        secret = environ.get("AUTH_JWT_SECRET", "")
    issuer = config.get("AUTH_JWT_ISSUER") or environ.get("AUTH_JWT_ISSUER") or DEFAULT_ISSUER
    return AuthSettings(secret=str(secret), issuer=str(issuer).strip())


def make_token(secret, subject, roles, agencies=(), id_number=None, issuer=DEFAULT_ISSUER, ttl_seconds=3600,
               now=None):
    """A signed caller token (no ``Bearer`` prefix)."""
    if not secret:
        raise ValueError("AUTH_JWT_SECRET is not set: no token can be signed")
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise ValueError(f"unknown roles {unknown}; roles are {', '.join(ROLES)}")
    issued = int(now if now is not None else time.time())
    claims = {"sub": subject, "roles": list(roles), "iss": issuer, "aud": AUDIENCE, "iat": issued,
              "exp": issued + int(ttl_seconds)}
    if agencies:
        claims["agencies"] = list(agencies)
    if id_number is not None:
        claims["id_number"] = id_number
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def bearer(token):
    return f"Bearer {token}"


def _string_list(value, name, pattern=None):
    if value is None:
        return frozenset()
    if not isinstance(value, list) or len(value) > 100 or not all(isinstance(item, str) for item in value):
        raise Unauthorized(f"token claim {name} must be a list of strings")
    if pattern is not None and not all(pattern.fullmatch(item) for item in value):
        raise Unauthorized(f"token claim {name} holds a malformed value")
    return frozenset(value)


class _VerifiedTokens:
    """Callers of tokens verified lately, until each token's ``exp``: a portal frontend sends the same
    token with every call of a session, and verifying it (an HMAC and a JSON decode) was 8 % of the
    dossier service's CPU under load. Keyed by the secret, the issuer and the token's exact text, so
    a changed secret or any changed byte verifies afresh; a refused token is never kept."""

    capacity = 10_000

    def __init__(self):
        self._callers = {}

    def get(self, key):
        entry = self._callers.get(key)
        if entry is None:
            return None
        caller, expires = entry
        if time.time() >= expires:
            self._callers.pop(key, None)
            return None
        return caller

    def put(self, key, caller, expires):
        if len(self._callers) >= self.capacity:
            self._callers.clear()  # a flood of distinct tokens costs a fresh verification each, never memory
        self._callers[key] = (caller, expires)


_verified = _VerifiedTokens()


def verify(header, settings):
    """The ``Caller`` of an ``authorization`` context value, or ``Unauthorized`` saying why."""
    key = (settings.secret, settings.issuer, header)
    if settings.configured and isinstance(header, str):
        caller = _verified.get(key)
        if caller is not None:
            return caller
    caller, expires = _verify(header, settings)
    _verified.put(key, caller, expires)
    return caller


def _verify(header, settings):
    """``(Caller, exp)`` of an ``authorization`` context value, or ``Unauthorized`` saying why."""
    if not settings.configured:
        raise Unauthorized("caller tokens cannot be verified: AUTH_JWT_SECRET is not configured")
    if header is None or header == "":
        raise Unauthorized("no caller token: send 'authorization: Bearer <token>' in the context data")
    if not isinstance(header, str) or len(header) > MAX_TOKEN_LENGTH:
        raise Unauthorized("malformed caller token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("malformed caller token: expected 'Bearer <token>'")
    try:
        claims = jwt.decode(
            token.strip(), settings.secret, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=settings.issuer,
            options={"require": ["exp", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("caller token expired") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("caller token signature is not valid") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"caller token refused: {exc}") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > 128:
        raise Unauthorized("token claim sub must be a non-empty string of at most 128 characters")
    roles = _string_list(claims.get("roles"), "roles")
    if not roles or not roles <= set(ROLES):
        raise Unauthorized(f"token claim roles must name at least one of {', '.join(ROLES)}")
    agencies = _string_list(claims.get("agencies"), "agencies", AGENCY_CODE)
    id_number = claims.get("id_number")
    if id_number is not None and not (isinstance(id_number, str) and CITIZEN_ID.fullmatch(id_number)):
        raise Unauthorized("token claim id_number must be a 12-digit citizen ID")
    if "citizen" in roles and id_number is None:
        raise Unauthorized("a citizen token must carry id_number")
    return Caller(subject=subject, roles=roles, agencies=agencies, id_number=id_number), claims["exp"]


class CallerAccess:
    """What an entrypoint sees: the caller, verified on first use."""

    def __init__(self, header, settings):
        self._header = header
        self._settings = settings
        self._caller = None

    def require(self, *roles):
        """The verified ``Caller``; ``Forbidden`` unless it holds one of ``roles`` (when given)."""
        if self._caller is None:
            self._caller = verify(self._header, self._settings)
        if roles and not self._caller.has(*roles):
            raise Forbidden(f"this call needs one of the roles {', '.join(roles)}")
        return self._caller


class ServiceTokens:
    """Tokens a service makes for itself (role ``service``), renewed before they expire."""

    def __init__(self, service_name, settings, ttl_seconds=SERVICE_TOKEN_SECONDS):
        self.service_name = service_name
        self.settings = settings
        self.ttl_seconds = ttl_seconds
        self._token, self._renew_at = None, 0.0

    def header(self):
        now = time.time()
        if self._token is None or now >= self._renew_at:
            token = make_token(self.settings.secret, f"service:{self.service_name}", ["service"],
                               issuer=self.settings.issuer, ttl_seconds=self.ttl_seconds, now=now)
            self._token, self._renew_at = bearer(token), now + self.ttl_seconds / 2
        return self._token


def _read_dev_secret():
    try:
        with open(DEV_SECRET_FILE, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def main(argv=None):
    """``portal-token``: print a signed caller token (``Bearer ...`` with ``--bearer``)."""
    parser = argparse.ArgumentParser(
        prog="portal-token",
        description="Make a caller token signed with AUTH_JWT_SECRET (or, with --dev, the key `make run` wrote "
                    f"to {DEV_SECRET_FILE}).")
    parser.add_argument("--sub", required=True, help="who is calling (recorded as the history's actor)")
    parser.add_argument("--role", action="append", required=True, choices=ROLES, help="repeat for several roles")
    parser.add_argument("--agency", action="append", default=[], help="agency code served (officer, finance)")
    parser.add_argument("--id-number", help="the citizen's 12-digit ID (role citizen)")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds of validity (default 3600)")
    parser.add_argument("--bearer", action="store_true", help="print 'Bearer <token>'")
    parser.add_argument("--dev", action="store_true", help=f"sign with the dev key in {DEV_SECRET_FILE}")
    args = parser.parse_args(argv)
    settings = auth_settings()
    secret = settings.secret or (_read_dev_secret() if args.dev else "")
    if not secret:
        parser.error("AUTH_JWT_SECRET is not set (use --dev with `make run`'s dev key)")
    if args.id_number is not None and not CITIZEN_ID.fullmatch(args.id_number):
        parser.error("--id-number must be 12 digits")
    token = make_token(secret, args.sub, args.role, args.agency, args.id_number, settings.issuer, args.ttl)
    sys.stdout.write((bearer(token) if args.bearer else token) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
