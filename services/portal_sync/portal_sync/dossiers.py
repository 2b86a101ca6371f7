"""The dossier service, as portal_sync reads it: what can go wrong, and who is calling.

Every call portal_sync makes to another service goes through
``DossierDirectory`` (``portal_sync.providers``, over Nameko RPC);
``caller_context()`` is the one place that says who is calling (CONTRACT
section 5: service-to-service calls carry a JWT with the role ``service`` in
the context data under ``authorization``).
"""
from portal_shared.auth import AUTH_CONTEXT_KEY, ServiceTokens, auth_settings


class DossierUnavailable(Exception):
    """The dossier service did not answer (broker down, timeout): try again later."""


class DossierMissing(Exception):
    """The dossier service does not know this dossier."""


def service_tokens(config):
    """portal_sync's own ``service`` tokens, signed with ``AUTH_JWT_SECRET`` (config, else the environment)."""
    return ServiceTokens("portal_sync", auth_settings(config))


def caller_context(tokens):
    """Nameko context data for our calls: the caller's identity goes here, and only here."""
    try:
        return {AUTH_CONTEXT_KEY: tokens.header()}
    except ValueError:  # AUTH_JWT_SECRET unset: dossier would refuse us; keep the work pending
        raise DossierUnavailable("AUTH_JWT_SECRET is not set: no service token for dossier") from None
