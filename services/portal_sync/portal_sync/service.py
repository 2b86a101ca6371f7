"""Nameko entrypoints of portal_sync: events become commands for the bus; statistics; metrics."""
from nameko.timer import timer
from prometheus_client import Gauge

from portal_shared.errors import Forbidden, Unauthorized, ValidationError, load
from portal_shared.extensions.auth import CallerIdentity
from portal_shared.extensions.database import Database
from portal_shared.extensions.events import reliable_event_handler
from portal_shared.extensions.grouping import GroupCommits
from portal_shared.extensions.health import HealthEndpoints, Monitoring
from portal_shared.extensions.logs import WorkerLogContext
from portal_shared.extensions.rpc import rpc
from portal_shared.extensions.runtime import CpuWeight, StartupHeapFrozen
from portal_sync import use_cases
from portal_sync.commands import RecordFee, RecordStatusChange, RecordStatusChanges
from portal_sync.delivery import PortalDelivery
from portal_sync.domain.records import PaidFee
from portal_sync.messagebus import MessageBus
from portal_sync.orm import Base  # noqa: F401  (tables known to Alembic autogenerate)
from portal_sync.providers import Dossiers, NationalCatalogue
from portal_sync.schemas import PaymentEventSchema, StatusChangedSchema
from portal_sync.unit_of_work import SqlUnitOfWork

SYNC_DOSSIERS = Gauge("portal_sync_dossiers", "Dossiers by synchronisation state", ["state"])
OLDEST_PENDING = Gauge("portal_sync_oldest_pending_seconds", "Age of the oldest change not yet at the portal")


class PortalSyncService(HealthEndpoints):
    name = "portal_sync"

    log = WorkerLogContext()
    db = Database(migrations="portal_sync:migrations", relay_events=False)
    monitoring = Monitoring()
    runtime = StartupHeapFrozen()  # no full collection walks the start-up heap (portal_shared.runtime)
    cpu = CpuWeight()  # CPU_NICE: its share of a CPU the stack shares (portal_shared.runtime)
    catalogue = NationalCatalogue()
    dossiers = Dossiers()
    caller = CallerIdentity()
    delivery = PortalDelivery()
    # dossier events that arrive together are recorded together: one transaction (portal_shared.extensions.grouping)
    status_changes = GroupCommits.of_commands(MessageBus, RecordStatusChanges)

    @reliable_event_handler("dossier", "dossier_status_changed")
    def on_dossier_status_changed(self, payload):
        event = load(StatusChangedSchema, payload)
        change = RecordStatusChange("portal_sync.on_dossier_status_changed", event["event_id"], event["dossier_code"])
        if self.status_changes.run(change, SqlUnitOfWork(self.db)):
            self.delivery.wake()
        self.log.info("dossier_change_recorded", dossier_code=event["dossier_code"], status=event["new_status"])

    @reliable_event_handler("payment", "payment_succeeded")
    def on_payment_succeeded(self, payload):
        event = load(PaymentEventSchema, payload)
        if self._bus().handle(self._fee("portal_sync.on_payment_succeeded", event)):
            self.delivery.wake()
        self.log.info("fee_recorded", dossier_code=event["dossier_code"], txn_ref=event["txn_ref"])

    @reliable_event_handler("payment", "payment_refunded")
    def on_payment_refunded(self, payload):
        event = load(PaymentEventSchema, payload)
        if self._bus().handle(self._fee("portal_sync.on_payment_refunded", event, refunded=True)):
            self.delivery.wake()
        self.log.info("refund_recorded", dossier_code=event["dossier_code"], txn_ref=event["txn_ref"])

    @rpc(expected_exceptions=(ValidationError, Unauthorized, Forbidden))
    def sync_stats(self):
        self.caller.require("operator")  # database-wide figures: operators only
        return use_cases.sync_stats(SqlUnitOfWork(self.db))

    @timer(interval=15, eager=True)
    def refresh_sync_gauges(self):
        """Sets the sync gauges that ``/metrics`` shows; ``/metrics`` itself is answered by the web server
        without a worker or a query (``portal_shared.extensions.health``), so it keeps answering under any load."""
        try:
            stats = use_cases.sync_stats(SqlUnitOfWork(self.db))
        except Exception:  # the database being away shows on /readyz; the gauges keep their last values
            return
        for state in ("synced", "pending", "parked"):
            SYNC_DOSSIERS.labels(state).set(stats[state])
        OLDEST_PENDING.set(stats["oldest_pending_seconds"])

    def _bus(self):
        return MessageBus(SqlUnitOfWork(self.db))

    @staticmethod
    def _fee(consumer, event, refunded=False):
        fee = PaidFee(event["txn_ref"], event["amount"], event.get("gateway") or "", event.get("paid_at"))
        return RecordFee(consumer, event["event_id"], event["dossier_code"], fee, refunded=refunded)
