"""Refunds asked for by a callback, sent in the background so the callback never waits for a gateway.

An IPN that confirms a second payment for a dossier (or a payment for a
closed dossier) leaves that payment refund_pending. Calling the gateway's
refund API right there would keep VNPay or MoMo waiting for our answer as
long as the refund takes (up to the gateway timeout, past MoMo's 15 s), so the
callback hands the txn_ref to this provider and answers at once. A small
background thread of the container sends the refunds; whatever it cannot do
(a crash, a refusal) is retried by the pending-payments timer.
"""
from eventlet.queue import LightQueue

from payment.commands import RefundPayment
from payment.gateways.provider import Gateways
from payment.messagebus import MessageBus
from payment.unit_of_work import SqlUnitOfWork
from portal_shared.db import UnitOfWork
from portal_shared.extensions.background import BackgroundLoop
from portal_shared.extensions.database import Database
from portal_shared.logs import get_logger

log = get_logger(__name__)


class BackgroundRefunds(BackgroundLoop):
    thread_name = "background_refunds"

    def setup(self):
        super().setup()
        self.queue = LightQueue()

    def _provider(self, kind):
        return next(extension for extension in self.container.dependencies if isinstance(extension, kind))

    def loop(self):
        database, gateways = self._provider(Database), self._provider(Gateways)
        while True:
            txn_ref = self.queue.get()
            unit_of_work = UnitOfWork(database.sessionmaker, database.relay)
            try:
                bus = MessageBus(SqlUnitOfWork(unit_of_work), gateways.settings)
                refunded = bus.handle(RefundPayment(txn_ref))
                log.info("refund_attempted", txn_ref=txn_ref, refunded=refunded)
            except Exception:
                log.exception("refund_failed", txn_ref=txn_ref)
            finally:
                unit_of_work.close()

    def get_dependency(self, worker_ctx):
        return self.queue.put
