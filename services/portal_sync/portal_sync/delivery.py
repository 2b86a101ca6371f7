"""The delivery loop: a managed thread per process that reports pending dossiers to the portal.

Woken right after an event is recorded, and at least every
``PORTAL_SYNC_TICK_SECONDS``; a wake-up first lets ``PORTAL_SYNC_GATHER_SECONDS``
(0.5 s) of further changes gather, so a busy hour sends full lists rather than
one round (a transaction, a ``get_dossiers`` wait, an HTTP call) per event. Each round claims up to ``PORTAL_SYNC_BATCH_SIZE``
due dossiers (rows locked ``FOR UPDATE SKIP LOCKED``, so replicas share the
work) and sends them in one ``data`` list per operation. While the adapter is
away the loop waits ``PORTAL_SYNC_BACKOFF_SECONDS``, doubled per failed round
up to ``PORTAL_SYNC_MAX_BACKOFF_SECONDS``. Without ``NATIONAL_PORTAL_URL``
nothing is sent: changes stay pending until a process starts with it set.
"""
import threading

from nameko.extensions import DependencyProvider
from prometheus_client import Counter

from portal_shared.config import get_float, get_int
from portal_shared.db import UnitOfWork
from portal_shared.extensions.database import Database
from portal_shared.logs import get_logger
from portal_sync.client import NationalPortalClient, PortalSettings
from portal_sync.commands import DeliverDue
from portal_sync.messagebus import MessageBus
from portal_sync.providers import Dossiers, KeptDirectory, NationalCatalogue
from portal_sync.unit_of_work import SqlUnitOfWork

log = get_logger(__name__)

DELIVERED = Counter("portal_sync_delivered_total", "Dossier deliveries the national portal accepted")
STEPS = Counter("portal_sync_steps_total", "Progress entries (CapNhatTienDoHoSoMC) the portal accepted")
PARKED = Counter("portal_sync_parked_total", "Dossiers parked after a refusal")
UNAVAILABLE = Counter("portal_sync_unavailable_total", "Delivery rounds that found the adapter away")


class PortalDelivery(DependencyProvider):
    def setup(self):
        config = self.container.config
        self.settings = PortalSettings.from_config(config)
        self.tick_seconds = get_float(config, "PORTAL_SYNC_TICK_SECONDS", 1.0)
        self.gather_seconds = max(0.0, get_float(config, "PORTAL_SYNC_GATHER_SECONDS", 0.5))
        self.batch_size = max(1, get_int(config, "PORTAL_SYNC_BATCH_SIZE", 50))
        self.backoff_seconds = get_float(config, "PORTAL_SYNC_BACKOFF_SECONDS", 2.0)
        self.max_backoff_seconds = get_float(config, "PORTAL_SYNC_MAX_BACKOFF_SECONDS", 300.0)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._running = False
        if not self.settings.configured:
            log.warning("national_portal_not_configured",
                        detail="NATIONAL_PORTAL_URL unset: changes are kept and sent once it is set")

    def _dependency(self, kind):
        return next(extension for extension in self.container.dependencies if isinstance(extension, kind))

    def start(self):
        if self.settings.configured:
            self._running = True
            self.container.spawn_managed_thread(self.run, identifier="portal_delivery")

    def stop(self):
        self._running = False
        self._stopping.set()
        self._wake.set()

    def kill(self):
        self.stop()

    def wake(self):
        self._wake.set()

    def get_dependency(self, worker_ctx):
        return self

    def _delay(self, failures):
        return min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (failures - 1))

    def run(self):
        database = self._dependency(Database)
        directory = KeptDirectory(self._dependency(Dossiers).directory)  # one proxy for this thread's rounds
        codes = self._dependency(NationalCatalogue).codes
        client = NationalPortalClient(self.settings)
        uow = UnitOfWork(database.sessionmaker, None)
        bus = MessageBus(SqlUnitOfWork(uow), directory=directory, client=client, codes=codes)
        deliver = DeliverDue(self.batch_size, self.backoff_seconds, self.max_backoff_seconds)
        failures = 0
        try:
            while self._running:
                if failures:  # backing off: an event arriving meanwhile does not cut the wait short
                    self._stopping.wait(self._delay(failures))
                elif self._wake.wait(self.tick_seconds) and self.gather_seconds:
                    self._stopping.wait(self.gather_seconds)  # let the changes of the next moments join this round
                self._wake.clear()
                if not self._running:
                    break
                try:
                    failures = self._rounds(bus, deliver, failures)
                except Exception as exc:  # database away: keep everything pending, try again later
                    failures += 1
                    log.warning("portal_delivery_failed", error=f"{type(exc).__name__}: {exc}"[:500])
                finally:
                    uow.close()
        finally:
            directory.close()

    def _rounds(self, bus, deliver, failures):
        while self._running:
            outcome = bus.handle(deliver)
            DELIVERED.inc(outcome["delivered"])
            STEPS.inc(outcome["steps"])
            PARKED.inc(outcome["parked"])
            if outcome["delivered"] or outcome["parked"]:
                log.info("portal_sync_delivered", delivered=outcome["delivered"], steps=outcome["steps"],
                         parked=outcome["parked"], deferred=outcome["deferred"], calls=outcome["calls"])
            if outcome["unavailable"]:
                UNAVAILABLE.inc()
                return failures + 1
            if outcome["claimed"] < self.batch_size:
                return 0
        return 0
