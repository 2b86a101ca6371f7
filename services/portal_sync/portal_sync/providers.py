"""portal_sync's Nameko providers: the dossier service over RPC, the national catalogue.

``DossierDirectory`` opens a ``DossierReader`` (``get_dossiers``,
``get_dossier``, ``list_dossiers``) on its own ``ClusterRpcProxy`` whose calls carry
portal_sync's ``service`` token (``dossiers.caller_context``); ``Dossiers``
hands the directory to the service's workers and delivery thread;
``NationalCatalogue`` loads the procedure codes (``catalogue.NationalCodes``).
"""
from contextlib import contextmanager

from nameko.exceptions import MethodNotFound, RemoteError
from nameko.extensions import DependencyProvider
from nameko.standalone.rpc import ClusterRpcProxy

from portal_shared.config import get_str
from portal_shared.logs import get_logger
from portal_sync.catalogue import NationalCodes
from portal_sync.dossiers import DossierMissing, DossierUnavailable, caller_context, service_tokens

log = get_logger(__name__)

RPC_TIMEOUT_SECONDS = 30
CODES_PER_CALL = 100  # the most dossier's get_dossiers takes


class PortalSyncRpcProxy(ClusterRpcProxy):
    """A cluster proxy whose reply queue is ``rpc.reply-portal_sync-<uuid>`` (the broker user's own)."""

    class ServiceContainer(ClusterRpcProxy.ServiceContainer):
        service_name = "portal_sync"


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

    def get_many(self, codes):
        """``{code: dossier}`` of the codes the dossier service knows (the others are absent), read with
        ``get_dossiers``, at most ``CODES_PER_CALL`` codes a call.

        A dossier service that has no ``get_dossiers`` yet (an older one, during a rolling upgrade) answers
        ``MethodNotFound`` (Nameko sends it as that class, not as a ``RemoteError``): the remaining codes
        are then read one by one with ``get_dossier``."""
        codes = list(dict.fromkeys(codes))
        found = {}
        for start in range(0, len(codes), CODES_PER_CALL):
            try:
                answer = self._proxy.dossier.get_dossiers(codes[start:start + CODES_PER_CALL])
            except MethodNotFound:
                log.info("dossier_batch_read_unavailable", fallback="get_dossier", dossiers=len(codes) - start)
                return self._one_by_one(codes[start:], found)
            except RemoteError as exc:
                raise DossierUnavailable(f"get_dossiers: {exc.exc_type}") from None
            except Exception as exc:
                raise DossierUnavailable(f"get_dossiers: {type(exc).__name__}") from None
            found.update((dossier["code"], dossier) for dossier in answer["dossiers"])
        return found

    def _one_by_one(self, codes, found):
        for code in codes:
            try:
                found[code] = self.get(code)
            except DossierMissing:
                pass  # absent from the answer, as get_dossiers leaves it
        return found

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
        proxy, client = self.connect()
        try:
            yield DossierReader(client)
        finally:
            proxy.stop()

    def connect(self):
        """A started proxy and its client (``proxy.stop()`` when done); ``DossierUnavailable`` without a broker."""
        try:
            proxy = PortalSyncRpcProxy(self.config, context_data=caller_context(self._tokens),
                                       timeout=self.timeout)
            return proxy, proxy.start()
        except Exception as exc:
            raise DossierUnavailable(f"broker: {type(exc).__name__}") from None


class KeptDirectory:
    """A ``DossierDirectory`` whose proxy stays open from one ``open()`` to the next, for one green thread
    (the delivery loop, which otherwise connected, declared a reply queue and disconnected every round).
    A block that ends in ``DossierUnavailable`` drops the proxy: the next ``open()`` connects afresh."""

    def __init__(self, directory):
        self._directory = directory
        self._proxy = self._client = None

    @contextmanager
    def open(self):
        if self._client is None:
            self._proxy, self._client = self._directory.connect()
        try:
            yield DossierReader(self._client)
        except DossierUnavailable:
            self.close()
            raise

    def close(self):
        proxy, self._proxy, self._client = self._proxy, None, None
        if proxy is not None:
            try:
                proxy.stop()
            except Exception as exc:  # a broken connection: nothing left to close
                log.warning("dossier_proxy_close_failed", error=type(exc).__name__)


class Dossiers(DependencyProvider):
    """Hands workers (and the delivery thread) the ``DossierDirectory``."""

    def setup(self):
        self.directory = DossierDirectory(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.directory


class NationalCatalogue(DependencyProvider):
    """Loads the catalogue in ``setup()``; a malformed file stops start-up, as in dossier."""

    def setup(self):
        self.codes = NationalCodes.load(get_str(self.container.config, "DOSSIER_PROCEDURES_FILE"))

    def get_dependency(self, worker_ctx):
        return self.codes
