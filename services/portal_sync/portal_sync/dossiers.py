"""The dossier service, as portal_sync reads it: ``get_dossier`` and ``list_dossiers`` over RPC.

Every call portal_sync makes to another service goes through
``DossierDirectory``; ``caller_context()`` is the one place that says who is
calling (CONTRACT section 5: service-to-service calls carry a JWT with the
role ``service`` in the context data under ``authorization``).
"""
from contextlib import contextmanager

from nameko.exceptions import RemoteError
from nameko.extensions import DependencyProvider
from nameko.standalone.rpc import ClusterRpcProxy

from portal_shared.auth import AUTH_CONTEXT_KEY, ServiceTokens, auth_settings

RPC_TIMEOUT_SECONDS = 30


class DossierUnavailable(Exception):
    """The dossier service did not answer (broker down, timeout): try again later."""


class DossierMissing(Exception):
    """The dossier service does not know this dossier."""


class PortalSyncRpcProxy(ClusterRpcProxy):
    """A cluster proxy whose reply queue is ``rpc.reply-portal_sync-<uuid>`` (the broker user's own)."""

    class ServiceContainer(ClusterRpcProxy.ServiceContainer):
        service_name = "portal_sync"


def service_tokens(config):
    """portal_sync's own ``service`` tokens, signed with ``AUTH_JWT_SECRET`` (config, else the environment)."""
    return ServiceTokens("portal_sync", auth_settings(config))


def caller_context(tokens):
    """Nameko context data for our calls: the caller's identity goes here, and only here."""
    try:
        return {AUTH_CONTEXT_KEY: tokens.header()}
    except ValueError:  # AUTH_JWT_SECRET unset: dossier would refuse us; keep the work pending
        raise DossierUnavailable("AUTH_JWT_SECRET is not set: no service token for dossier") from None


class DossierReader:
    """An open connection to the dossier service for one green thread."""

    def __init__(self, proxy):
        self._proxy = proxy

    def get(self, code):
        try:
            return self._proxy.dossier.get_dossier(code)
        except RemoteError as exc:
            if exc.exc_type == "DossierNotFound":
                raise DossierMissing(code) from None
            raise DossierUnavailable(f"get_dossier: {exc.exc_type}") from None
        except Exception as exc:
            raise DossierUnavailable(f"get_dossier: {type(exc).__name__}") from None

    def page(self, limit, offset):
        """``list_dossiers`` newest first: ``{items, total}``."""
        try:
            return self._proxy.dossier.list_dossiers(limit=limit, offset=offset)
        except Exception as exc:
            raise DossierUnavailable(f"list_dossiers: {type(exc).__name__}") from None


class DossierDirectory:
    """Opens ``DossierReader``s; one ``ClusterRpcProxy`` per ``open()``, never shared between threads."""

    def __init__(self, config, timeout=RPC_TIMEOUT_SECONDS):
        self.config = {"AMQP_URI": config["AMQP_URI"]}
        self._tokens = service_tokens(config)
        self.timeout = timeout

    @contextmanager
    def open(self):
        try:
            proxy = PortalSyncRpcProxy(self.config, context_data=caller_context(self._tokens),
                                    timeout=self.timeout)
            client = proxy.start()
        except Exception as exc:
            raise DossierUnavailable(f"broker: {type(exc).__name__}") from None
        try:
            yield DossierReader(client)
        finally:
            proxy.stop()


class Dossiers(DependencyProvider):
    """Hands workers (and the delivery thread) the ``DossierDirectory``."""

    def setup(self):
        self.directory = DossierDirectory(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.directory
