"""The payment service's in-process message bus: commands to their use case, events to their handlers.

Two tables say what follows an event. ``IN_TRANSACTION`` handlers run inside
the transaction that raised it, when the unit of work commits (the contract's
event goes into the outbox with the status change, or neither does);
``AFTER_COMMIT`` handlers run once it has committed (a refund request: a
gateway call, never under a lock). The dispatching is
``portal_shared.unit_of_work``'s.
"""
from payment import commands, use_cases
from payment.domain.events import PaymentFailed, PaymentRefunded, PaymentSucceeded, RefundRequired
from portal_shared import unit_of_work
from portal_shared.event_signing import environ_key, signed_headers
from portal_shared.logs import get_logger
from portal_shared.outbox import new_event
from portal_shared.timeutil import isoformat

log = get_logger(__name__)

EVENT_TYPES = {
    PaymentSucceeded: "payment_succeeded",
    PaymentFailed: "payment_failed",
    PaymentRefunded: "payment_refunded",
}


def contract_payload(event):
    """The contract's payload of a payment event (a fresh ``event_id`` and ``occurred_at`` included)."""
    fields = {
        "txn_ref": event.txn_ref,
        "dossier_code": event.dossier_code,
        "amount": int(event.amount),
        "gateway": event.gateway,
        "gateway_txn_no": event.gateway_txn_no,
        "paid_at": isoformat(event.paid_at),
    }
    if isinstance(event, PaymentFailed):
        fields["reason"] = event.reason
    return new_event(**fields)


EVENT_KEY = "PAYMENT_EVENT_KEY"  # shared with dossier only: signed events need no confirming RPC


def record_in_outbox(event, uow):
    event_type, payload = EVENT_TYPES[type(event)], contract_payload(event)
    uow.outbox.add(event_type, payload, aggregate_key=event.dossier_code,
                   headers=signed_headers(environ_key(EVENT_KEY), event_type, payload))


def request_refund(event, bus):
    log.warning("payment_to_refund", txn_ref=event.txn_ref, dossier_code=event.dossier_code, reason=event.reason)
    bus.request_refund(event.txn_ref)


IN_TRANSACTION = {
    PaymentSucceeded: [record_in_outbox],
    PaymentFailed: [record_in_outbox],
    PaymentRefunded: [record_in_outbox],
    RefundRequired: [],
}
AFTER_COMMIT = {
    RefundRequired: [request_refund],
}
COMMAND_HANDLERS = {
    commands.StartPayment: use_cases.start_payment,
    commands.LearnCharge: use_cases.learn_charge,
    commands.RecordDossierStatus: use_cases.record_dossier_status,
    commands.AcceptVnpayIpn: use_cases.vnpay_ipn,
    commands.AcceptMomoIpn: use_cases.momo_ipn,
    commands.SettlePending: use_cases.settle_pending,
    commands.RefundPayment: use_cases.refund_payment,
}


class MessageBus(unit_of_work.MessageBus):
    """``handle(command)``: the use case's result, after the events it raised have been dispatched.

    ``request_refund(txn_ref)`` is where refunds go: a background queue for a
    callback (the gateway never waits), a direct ``RefundPayment`` for the timer.
    """

    command_handlers = COMMAND_HANDLERS
    after_commit = AFTER_COMMIT

    def __init__(self, uow, settings, request_refund=None):
        super().__init__(uow, settings=settings)
        self.settings = settings
        self.request_refund = request_refund or self._refund_now

    def _refund_now(self, txn_ref):
        return self.handle(commands.RefundPayment(txn_ref))
