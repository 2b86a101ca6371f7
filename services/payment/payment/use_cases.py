"""Use cases of the payment service: handlers ``(command, uow, settings)`` over the ``Payment`` aggregate.

Every status change is the aggregate's (``domain/model.py``), inside one
transaction of the unit of work that holds the payment's row lock (``SELECT
... FOR UPDATE``); the unit of work stores its history and, through the bus,
records its event in the outbox, so concurrent IPNs, queries and processes
give exactly one transition and one event. Lock order, where both are taken:
payment rows first, then the dossier's charge row.

No lock is ever held across the network: gateway calls (checkout, query,
refund) run outside any transaction, and their answer is applied afterwards
only if the payment is still in the state that was sent to the gateway (a
re-check under a short row lock). So an IPN never waits for a gateway call,
however long the gateway takes.

Follow-up work leaves as events: a success that cannot be kept raises
``RefundRequired``, which the bus turns into a refund request after commit.
No SQLAlchemy here: the repositories of the unit of work hold the queries.
"""
from datetime import timedelta

from payment.domain.model import (
    CLOSING_STATUSES,
    Charge,
    ChargeStatus,
    Notification,
    Outcome,
    Payment,
    PaymentNotFound,
    Source,
    Status,
    new_txn_ref,
)
from payment.gateways import (
    CheckoutRequest,
    ForeignMerchant,
    GatewayUnavailable,
    InvalidSignature,
    MalformedMessage,
    QueryRequest,
    RefundRequest,
    RefundResult,
)
from payment.gateways.vnpay import verdict_for, vnpay_verdict
from portal_shared.errors import ValidationError
from portal_shared.logs import get_logger
from portal_shared.timeutil import isoformat, utcnow

log = get_logger(__name__)

PAYMENT_REQUESTED = "payment_requested"
REUSE_MARGIN = timedelta(minutes=2)  # a pending attempt with less time left is not handed out again
REFUND_LEASE = timedelta(minutes=2)  # an attempt still unanswered after this (a crashed process) may be retried


def order_info(dossier_code):
    # ASCII only: VNPay rejects diacritics in vnp_OrderInfo
    return f"Thanh toan le phi ho so {dossier_code}"


# --- charges: what the dossier service says is due ------------------------------------------


def record_dossier_status(command, uow, settings=None):
    """React to ``dossier_status_changed`` once per event: a fee due, or a dossier closed.

    Closing a dossier queues a refund of each succeeded payment (``RefundRequired``).
    """
    now = command.now or utcnow()
    event = command.event
    dossier_code, new_status = event["dossier_code"], event["new_status"]
    if not _concerns_payment(event):
        return  # most changes (submitted, accepted, processing, ...): nothing to do, no transaction
    with uow:
        if not uow.inbox.claim(command.consumer, event["event_id"]):
            return
        if new_status in CLOSING_STATUSES:
            reason = f"dossier {new_status}"
            for payment in uow.payments.succeeded_for_update(dossier_code):
                payment.queue_refund(reason, now, {"event": event})
            charge = uow.charges.get_for_update(dossier_code)
            if charge is not None:
                charge.cancel(now)
        else:  # a fee falling due
            charge = uow.charges.add_if_missing(Charge(
                dossier_code=dossier_code, amount=event["fee_amount"], status=ChargeStatus.due,
                procedure_name=event.get("procedure_name"), agency_code=event.get("agency_code"),
                source_event_id=event["event_id"], created_at=now, updated_at=now,
            ))
            charge.announce(event["fee_amount"], event.get("procedure_name"), event.get("agency_code"),
                            event["event_id"], now)
        uow.commit()


def _concerns_payment(event):
    """A fee falling due or a dossier closing; every other change leaves payment as it is (and so needs
    neither a transaction nor an inbox row to stay idempotent)."""
    new_status = event["new_status"]
    return (new_status == PAYMENT_REQUESTED and (event.get("fee_amount") or 0) > 0) or new_status in CLOSING_STATUSES


def learn_charge(command, uow, settings=None):
    """The charge of a dossier the dossier service says is awaiting ``amount``, when payment has not
    heard of it yet (``start_payment`` straight after ``accept``). Only ever added: the dossier's own
    events, which follow in order, update or cancel it as they would a charge they had made."""
    now = command.now or utcnow()
    with uow:
        uow.charges.add_if_missing(Charge(
            dossier_code=command.dossier_code, amount=command.amount, status=ChargeStatus.due,
            procedure_name=command.procedure_name, agency_code=command.agency_code, created_at=now, updated_at=now,
        ))
        uow.commit()


# --- starting a payment ---------------------------------------------------------------------


def start_payment(command, uow, settings):
    """Create a pending payment for the dossier's charge and return it with its ``pay_url``.

    An unexpired pending attempt at the same gateway is returned again instead
    of a new gateway order. Otherwise the pending payment is committed *before*
    the gateway is called (no order at the gateway that this service does not
    know of), then completed with the pay URL; a gateway failure leaves it
    failed with the reason. At most ``PAYMENT_MAX_ATTEMPTS`` per dossier.
    """
    now = (command.now or utcnow()).replace(microsecond=0)  # the gateway sees whole seconds
    refusal = settings.return_urls.refusal(command.return_url)
    if refusal:
        raise ValidationError({"return_url": [refusal]})
    gateway = settings.gateway(command.gateway)
    with uow:
        charge = uow.charges.get_for_update(command.dossier_code)  # serialises the starts of one dossier
        if charge is None:
            charge = Charge(command.dossier_code, 0, ChargeStatus.cancelled)  # nothing due: refused below
        charge.check_payable()
        amount = int(charge.amount)
        refused = gateway.refuse_amount(amount)
        if refused:
            raise ValidationError({"gateway": [refused]})
        gateway.require_configured()
        reusable = uow.payments.find_reusable(command.dossier_code, command.gateway, amount, now + REUSE_MARGIN)
        if reusable is not None:
            return reusable
        attempts = uow.payments.count_for_dossier(command.dossier_code)
        if attempts >= settings.max_attempts:
            raise ValidationError({"dossier_code": [
                f"this dossier already has {attempts} payment attempts, the most allowed; ask the agency"]})
        payment = Payment.start(new_txn_ref(now), charge, command.gateway, command.client_ip, now,
                                now + timedelta(minutes=settings.expiry_minutes))
        uow.payments.add(payment)
        uow.commit()
    try:
        checkout = gateway.create_checkout(CheckoutRequest(
            txn_ref=payment.txn_ref, amount=amount, order_info=order_info(command.dossier_code),
            return_url=command.return_url, client_ip=command.client_ip, ipn_url=settings.momo_ipn_url,
            created_at=now, expires_at=payment.expires_at, bank_code=command.bank_code, locale=command.locale,
        ))
    except GatewayUnavailable as exc:
        with uow:
            locked = uow.payments.get_for_update(payment.txn_ref, with_charge=False)
            if locked is not None and locked.status is Status.pending:
                locked.fail(f"gateway unavailable: {exc}", Source.create, utcnow())
            uow.commit()
        raise
    with uow:
        payment.checkout_ready(checkout.pay_url)
        uow.payments.save([payment])
        uow.payments.amend_creation_evidence(payment, {"client_ip": command.client_ip,
                                                       "gateway_answer": checkout.raw})
        uow.commit()
    return payment


# --- callbacks ------------------------------------------------------------------------------


def vnpay_ipn(command, uow, settings):
    """Judge a VNPay IPN in VNPay's order of checks; returns its ``IpnVerdict`` (RspCode, Message)."""
    try:
        report = settings.gateway("vnpay").parse_notification(command.params)
    except InvalidSignature:
        return vnpay_verdict("97")
    except ForeignMerchant:
        return vnpay_verdict("01")  # signed, but not an order of this merchant: nothing to confirm here
    except MalformedMessage:
        return vnpay_verdict("99")
    with uow:
        payment = uow.payments.get_for_update(report.txn_ref, gateway="vnpay")
        notification = payment.judge(report.amount, report.outcome) if payment else Notification.unknown
        if notification is Notification.apply:
            payment.settle(report, Source.ipn, command.now or utcnow())
            uow.commit()
    return verdict_for(notification)


class RejectedNotification(Exception):
    """A MoMo IPN answered 400: nothing changed."""


def momo_ipn(command, uow, settings):
    """Apply a MoMo IPN; raises ``RejectedNotification`` for one that changes nothing and is refused."""
    try:
        report = settings.gateway("momo").parse_notification(command.body)
    except (InvalidSignature, MalformedMessage) as exc:
        raise RejectedNotification(str(exc)) from None
    with uow:
        payment = uow.payments.get_for_update(report.txn_ref, gateway="momo")
        if payment is None:
            raise RejectedNotification(f"unknown orderId {report.txn_ref}")
        if report.amount != payment.amount:
            raise RejectedNotification(f"amount {report.amount} differs from {payment.amount}")
        payment.settle(report, Source.ipn, command.now or utcnow())
        uow.commit()


# --- the timer: pending payments and refunds ------------------------------------------------


def settle_pending(command, uow, settings):
    """Query each pending payment at its gateway; expire the stale ones.

    The query runs outside any transaction; its answer is applied under a
    short row lock only if the payment is still pending (an IPN that came
    meanwhile wins, and never waited for the query).
    """
    with uow:
        txn_refs = uow.payments.txn_refs_in(Status.pending, command.batch)
    for txn_ref in txn_refs:
        try:
            _settle_one(uow, settings, txn_ref, command.now)
        except Exception:
            log.exception("pending_check_failed", txn_ref=txn_ref)


def _settle_one(uow, settings, txn_ref, now):
    with uow:
        seen = uow.payments.get(txn_ref)
    if seen is None or seen.status is not Status.pending:
        return
    gateway = settings.gateway(seen.gateway)
    report, error = None, None
    if gateway.configured:
        try:  # no transaction is open here: the gateway may take its 30 s
            report = gateway.query(QueryRequest(seen.txn_ref, seen.amount, seen.created_at,
                                                order_info(seen.dossier_code)))
        except GatewayUnavailable as exc:
            error = str(exc)
            log.warning("payment_query_failed", txn_ref=txn_ref, gateway=seen.gateway, error=error)
    else:
        error = f"{seen.gateway} not configured"
    moment = now or utcnow()
    with uow:
        # only a payment still pending, as it was when queried, takes the answer; a row locked by an
        # IPN right now is left to it (the next tick looks again), so the timer never waits either
        payment = uow.payments.get_for_update(txn_ref, skip_locked=True)
        if payment is None or payment.status is not Status.pending:
            log.info("payment_query_answer_dropped", txn_ref=txn_ref, reason="settled or busy meanwhile")
            return
        if report is not None and report.outcome is not Outcome.pending:
            if report.amount is not None and report.amount != payment.amount:
                log.error("payment_query_amount_mismatch", txn_ref=txn_ref, local=payment.amount,
                          gateway_amount=report.amount)
            else:
                payment.settle(report, Source.query, moment)
                uow.commit()
                return
        evidence = {"gateway_answer": report.raw if report else None, "error": error,
                    "expires_at": isoformat(payment.expires_at)}
        if payment.expire(moment, evidence):
            uow.commit()


def refunds_due(uow, batch=200):
    """txn_refs of refund_pending payments, oldest first."""
    with uow:
        return uow.payments.txn_refs_in(Status.refund_pending, batch)


def refund_payment(command, uow, settings):
    """Ask the gateway to refund a refund_pending payment; True once it is refunded.

    The attempt is first claimed (the aggregate numbers it; the repository
    stores it only if no one else took it meanwhile), so two processes never
    send the same refund, and no lock is held while the gateway answers. The
    answer is applied only to that attempt of a payment still refund_pending.
    A refusal leaves the payment refund_pending with ``refund_error`` set; the
    timer tries again.
    """
    moment = command.now or utcnow()
    with uow:
        payment = uow.payments.get(command.txn_ref)
        if payment is None:
            return False
        previous = payment.refund_attempts
        attempt = payment.claim_refund_attempt(moment, REFUND_LEASE)
        if attempt is None or not uow.payments.claim_refund_attempt(payment, previous, moment - REFUND_LEASE):
            return False
        uow.commit()
    try:  # no transaction is open here
        result = settings.gateway(payment.gateway).refund(RefundRequest(
            txn_ref=payment.txn_ref, amount=payment.amount, gateway_txn_no=payment.gateway_txn_no,
            created_at=payment.created_at, reason=payment.refund_reason or "refund", attempt=attempt,
        ))
    except GatewayUnavailable as exc:
        result = RefundResult(False, reason=str(exc))
    moment = command.now or utcnow()
    with uow:
        payment = uow.payments.get_for_update(command.txn_ref, with_charge=False)
        if payment is None or payment.status is not Status.refund_pending or payment.refund_attempts != attempt:
            log.warning("refund_answer_dropped", txn_ref=command.txn_ref, attempt=attempt, accepted=result.accepted)
            return False
        if not result.accepted:
            payment.refund_refused(result.reason, moment)
            uow.commit()
            log.warning("refund_refused", txn_ref=command.txn_ref, gateway=payment.gateway, attempt=attempt,
                        reason=result.reason)
            return False
        payment.refund_accepted(result, attempt, moment)
        uow.commit()
    return True


# --- reads ----------------------------------------------------------------------------------


def get_payment(uow, txn_ref):
    with uow:
        payment = uow.payments.get(txn_ref)
    if payment is None:
        raise PaymentNotFound(f"no payment {txn_ref!r}")
    return payment


def list_payments(uow, dossier_code):
    with uow:
        return uow.payments.for_dossier(dossier_code)
