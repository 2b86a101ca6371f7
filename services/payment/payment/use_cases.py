"""Use cases of the payment service: plain functions over a unit of work.

Every status change happens inside one transaction that holds the payment's
row lock (``SELECT ... FOR UPDATE``), appends to ``payment_history`` and
records its event in the outbox, so concurrent IPNs, queries and processes
give exactly one transition and one event. Lock order, where both are taken:
payment rows first (by id), then the dossier's charge row.

No lock is ever held across the network: gateway calls (checkout, query,
refund) run outside any transaction, and their answer is applied afterwards
only if the payment is still in the state that was sent to the gateway (a
conditional update under a short row lock). So an IPN never waits for a
gateway call, however long the gateway takes.
"""
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from payment.domain.model import (
    CLOSING_STATUSES,
    SETTLEABLE,
    ChargeStatus,
    NoPaymentDue,
    Outcome,
    PaymentNotFound,
    Source,
    Status,
    check_payable,
    check_transition,
    decide_success,
    judge_notification,
    new_txn_ref,
    vnpay_verdict,
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
from payment.orm import charges, payment_history, payments
from portal_shared.errors import ValidationError
from portal_shared.inbox import claim_event
from portal_shared.logs import get_logger
from portal_shared.outbox import new_event, record_event
from portal_shared.timeutil import isoformat, utcnow

log = get_logger(__name__)

PAYMENT_REQUESTED = "payment_requested"


def payment_succeeded_payload(row):
    """Fields of payment_succeeded / payment_refunded (without event_id/occurred_at) from a payments row."""
    values = row._mapping if hasattr(row, "_mapping") else row
    return {
        "txn_ref": values["txn_ref"],
        "dossier_code": values["dossier_code"],
        "amount": int(values["amount"]),
        "gateway": values["gateway"],
        "gateway_txn_no": values["gateway_txn_no"],
        "paid_at": isoformat(values["paid_at"]),
    }


def _insert_ignoring_conflict(session, table, values):
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(table).values(**values).on_conflict_do_nothing())


def _lock_payment(session, *conditions, skip_locked=False):
    statement = sa.select(payments).where(*conditions).with_for_update(skip_locked=skip_locked)
    return session.execute(statement).mappings().first()


def _lock_charge(session, dossier_code):
    statement = sa.select(charges).where(charges.c.dossier_code == dossier_code).with_for_update()
    return session.execute(statement).mappings().first()


def _transition(session, row, new_status, source, evidence, now, **values):
    """Move one locked payment to ``new_status`` and append the history entry; returns the new values."""
    new_status = check_transition(row["status"], new_status)
    changes = {"status": new_status.value, "updated_at": now, **values}
    session.execute(payments.update().where(payments.c.id == row["id"]).values(**changes))
    session.execute(
        payment_history.insert().values(
            payment_id=row["id"], txn_ref=row["txn_ref"], old_status=row["status"], new_status=new_status.value,
            source=Source(source).value, at=now, evidence=_jsonable(evidence),
        )
    )
    return {**row, **changes}


def _jsonable(evidence):
    if evidence is None:
        return None
    if isinstance(evidence, dict):
        return {str(key): _jsonable(value) for key, value in evidence.items()}
    if isinstance(evidence, (list, tuple)):
        return [_jsonable(value) for value in evidence]
    if isinstance(evidence, (str, int, float, bool)):
        return evidence
    return str(evidence)


def _emit(session, event_type, row, call_id_stack, **extra):
    payload = new_event(**payment_succeeded_payload(row), **extra)
    record_event(session, event_type, payload, aggregate_key=row["dossier_code"], call_id_stack=call_id_stack)


def apply_report(session, row, report, source, call_id_stack=None, now=None):
    """Apply a gateway's verified statement to a locked payment.

    Returns ``(changed, refund_txn_ref)``; ``refund_txn_ref`` names a payment
    that must now be refunded (a second success, or a dossier already closed).
    """
    now = now or utcnow()
    if report.outcome is Outcome.pending or Status(row["status"]) not in SETTLEABLE:
        return False, None
    evidence = {"gateway_answer": report.raw}
    if report.outcome is Outcome.failed:
        if Status(row["status"]) is not Status.pending:
            return False, None
        evidence["reason"] = report.reason
        row = _transition(session, row, Status.failed, source, evidence, now,
                          gateway_txn_no=report.gateway_txn_no or row["gateway_txn_no"])
        _emit(session, "payment_failed", row, call_id_stack, reason=report.reason)
        return True, None
    row = _transition(session, row, Status.succeeded, source, evidence, now,
                      gateway_txn_no=report.gateway_txn_no or row["gateway_txn_no"], paid_at=report.paid_at or now)
    _emit(session, "payment_succeeded", row, call_id_stack)
    charge = _lock_charge(session, row["dossier_code"])
    decision = decide_success(charge["status"] if charge else None, charge["paid_txn_ref"] if charge else None,
                              row["txn_ref"])
    if decision.keep:
        session.execute(
            charges.update().where(charges.c.dossier_code == row["dossier_code"])
            .values(status=ChargeStatus.paid.value, paid_txn_ref=row["txn_ref"], updated_at=now)
        )
        return True, None
    _transition(session, row, Status.refund_pending, Source.refund, {"reason": decision.refund_reason}, now,
                refund_reason=decision.refund_reason)
    log.warning("payment_to_refund", txn_ref=row["txn_ref"], dossier_code=row["dossier_code"],
                reason=decision.refund_reason)
    return True, row["txn_ref"]


# --- charges: what the dossier service says is due ------------------------------------------


def record_dossier_status(uow, consumer, event, call_id_stack=None, now=None):
    """React to ``dossier_status_changed`` once per event. Returns txn_refs to refund."""
    now = now or utcnow()
    to_refund = []
    with uow.transaction() as session:
        if not claim_event(session, consumer, event["event_id"]):
            return to_refund
        dossier_code, new_status = event["dossier_code"], event["new_status"]
        if new_status == PAYMENT_REQUESTED and (event.get("fee_amount") or 0) > 0:
            _insert_ignoring_conflict(session, charges, {
                "dossier_code": dossier_code, "amount": event["fee_amount"], "status": ChargeStatus.due.value,
                "procedure_name": event.get("procedure_name"), "source_event_id": event["event_id"],
                "agency_code": event.get("agency_code"), "created_at": now, "updated_at": now,
            })
            charge = _lock_charge(session, dossier_code)
            if charge["status"] != ChargeStatus.paid.value:
                session.execute(
                    charges.update().where(charges.c.dossier_code == dossier_code).values(
                        amount=event["fee_amount"], status=ChargeStatus.due.value, source_event_id=event["event_id"],
                        procedure_name=event.get("procedure_name"), agency_code=event.get("agency_code"),
                        updated_at=now,
                    )
                )
        elif new_status in CLOSING_STATUSES:
            reason = f"dossier {new_status}"
            rows = session.execute(
                sa.select(payments).where(payments.c.dossier_code == dossier_code,
                                          payments.c.status == Status.succeeded.value)
                .order_by(payments.c.id).with_for_update()
            ).mappings().all()
            for row in rows:
                _transition(session, row, Status.refund_pending, Source.refund, {"reason": reason, "event": event},
                            now, refund_reason=reason)
                to_refund.append(row["txn_ref"])
            session.execute(
                charges.update().where(charges.c.dossier_code == dossier_code)
                .values(status=ChargeStatus.cancelled.value, updated_at=now)
            )
    return to_refund


# --- starting a payment ---------------------------------------------------------------------


def order_info(dossier_code):
    # ASCII only: VNPay rejects diacritics in vnp_OrderInfo
    return f"Thanh toan le phi ho so {dossier_code}"


REUSE_MARGIN = timedelta(minutes=2)  # a pending attempt with less time left is not handed out again


def start_payment(uow, settings, request, now=None):
    """Create a pending payment for the dossier's charge and return it with its ``pay_url``.

    An unexpired pending attempt at the same gateway is returned again instead
    of a new gateway order. Otherwise the pending row is committed *before*
    the gateway is called (no order at the gateway that this service does not
    know of), then completed with the pay URL; a gateway failure leaves it
    failed with the reason. At most ``PAYMENT_MAX_ATTEMPTS`` per dossier.
    """
    now = (now or utcnow()).replace(microsecond=0)  # the gateway sees whole seconds
    refusal = settings.return_urls.refusal(request["return_url"])
    if refusal:
        raise ValidationError({"return_url": [refusal]})
    gateway = settings.gateway(request["gateway"])
    dossier_code = request["dossier_code"]
    with uow.transaction() as session:
        charge = _lock_charge(session, dossier_code)  # serialises the starts of one dossier
        check_payable(charge["status"] if charge else None)
        amount = int(charge["amount"])
        if request["gateway"] == "momo" and not gateway.accepts_amount(amount):
            raise ValidationError({"gateway": [f"MoMo takes 1,000 to 50,000,000 VND; this fee is {amount} VND"]})
        gateway.require_configured()
        reusable = session.execute(
            sa.select(payments).where(
                payments.c.dossier_code == dossier_code, payments.c.gateway == request["gateway"],
                payments.c.status == Status.pending.value, payments.c.amount == amount,
                payments.c.pay_url.is_not(None), payments.c.expires_at > now + REUSE_MARGIN,
            ).order_by(payments.c.id.desc()).limit(1)
        ).mappings().first()
        if reusable is not None:
            return dict(reusable)
        attempts = session.execute(
            sa.select(sa.func.count()).select_from(payments).where(payments.c.dossier_code == dossier_code)
        ).scalar_one()
        if attempts >= settings.max_attempts:
            raise ValidationError({"dossier_code": [
                f"this dossier already has {attempts} payment attempts, the most allowed; ask the agency"]})
        txn_ref = new_txn_ref(now)
        expires_at = now + timedelta(minutes=settings.expiry_minutes)
        values = {
            "txn_ref": txn_ref, "dossier_code": dossier_code, "amount": amount,
            "gateway": request["gateway"], "status": Status.pending.value, "pay_url": None,
            "created_at": now, "expires_at": expires_at, "updated_at": now, "client_ip": request["client_ip"],
        }
        payment_id = session.execute(payments.insert().values(**values).returning(payments.c.id)).scalar_one()
        session.execute(payment_history.insert().values(
            payment_id=payment_id, txn_ref=txn_ref, old_status=None, new_status=Status.pending.value,
            source=Source.create.value, at=now, evidence={"client_ip": request["client_ip"]},
        ))
    try:
        checkout = gateway.create_checkout(CheckoutRequest(
            txn_ref=txn_ref, amount=amount, order_info=order_info(dossier_code),
            return_url=request["return_url"], client_ip=request["client_ip"], ipn_url=settings.momo_ipn_url,
            created_at=now, expires_at=expires_at, bank_code=request.get("bank_code"), locale=request["locale"],
        ))
    except GatewayUnavailable as exc:
        with uow.transaction() as session:
            row = _lock_payment(session, payments.c.id == payment_id, payments.c.status == Status.pending.value)
            if row is not None:
                reason = f"gateway unavailable: {exc}"
                row = _transition(session, row, Status.failed, Source.create, {"reason": reason}, utcnow())
                _emit(session, "payment_failed", row, None, reason=reason)
        raise
    with uow.transaction() as session:
        session.execute(payments.update().where(payments.c.id == payment_id).values(pay_url=checkout.pay_url))
        session.execute(payment_history.update().where(
            payment_history.c.payment_id == payment_id, payment_history.c.source == Source.create.value,
        ).values(evidence=_jsonable({"client_ip": request["client_ip"], "gateway_answer": checkout.raw})))
    return {**values, "pay_url": checkout.pay_url, "id": payment_id, "gateway_txn_no": None, "paid_at": None,
            "refund_error": None}


# --- callbacks ------------------------------------------------------------------------------


def vnpay_ipn(uow, settings, params, call_id_stack=None, now=None):
    """Judge a VNPay IPN in VNPay's order of checks. Returns ``(verdict, refund_txn_ref)``."""
    try:
        report = settings.gateway("vnpay").parse_notification(params)
    except InvalidSignature:
        return vnpay_verdict("97"), None
    except ForeignMerchant:
        return vnpay_verdict("01"), None  # signed, but not an order of this merchant: nothing to confirm here
    except MalformedMessage:
        return vnpay_verdict("99"), None
    with uow.transaction() as session:
        row = _lock_payment(session, payments.c.txn_ref == report.txn_ref, payments.c.gateway == "vnpay")
        verdict = judge_notification(row["status"] if row else None, row["amount"] if row else None, report.amount,
                                     report.outcome)
        if not verdict.apply:
            return verdict, None
        _, refund_txn_ref = apply_report(session, row, report, Source.ipn, call_id_stack, now)
    return verdict, refund_txn_ref


class RejectedNotification(Exception):
    """A MoMo IPN answered 400: nothing changed."""


def momo_ipn(uow, settings, body, call_id_stack=None, now=None):
    """Apply a MoMo IPN; returns the txn_ref to refund or None; raises ``RejectedNotification``."""
    try:
        report = settings.gateway("momo").parse_notification(body)
    except (InvalidSignature, MalformedMessage) as exc:
        raise RejectedNotification(str(exc)) from None
    with uow.transaction() as session:
        row = _lock_payment(session, payments.c.txn_ref == report.txn_ref, payments.c.gateway == "momo")
        if row is None:
            raise RejectedNotification(f"unknown orderId {report.txn_ref}")
        if report.amount != row["amount"]:
            raise RejectedNotification(f"amount {report.amount} differs from {row['amount']}")
        _, refund_txn_ref = apply_report(session, row, report, Source.ipn, call_id_stack, now)
    return refund_txn_ref


# --- the timer: pending payments and refunds ------------------------------------------------


def settle_pending(uow, settings, call_id_stack=None, now=None, batch=200):
    """Query each pending payment at its gateway; expire the stale ones. Returns txn_refs to refund.

    The query runs outside any transaction; its answer is applied under a
    short row lock only if the payment is still pending (an IPN that came
    meanwhile wins, and never waited for the query).
    """
    with uow.read() as session:
        ids = session.execute(
            sa.select(payments.c.id).where(payments.c.status == Status.pending.value)
            .order_by(payments.c.id).limit(batch)
        ).scalars().all()
    to_refund = []
    for payment_id in ids:
        try:
            refund_txn_ref = _settle_one(uow, settings, payment_id, call_id_stack, now)
        except Exception:
            log.exception("pending_check_failed", payment_id=payment_id)
            continue
        if refund_txn_ref:
            to_refund.append(refund_txn_ref)
    return to_refund


def _settle_one(uow, settings, payment_id, call_id_stack, now):
    with uow.read() as session:
        seen = session.execute(sa.select(payments).where(payments.c.id == payment_id)).mappings().first()
    if seen is None or seen["status"] != Status.pending.value:
        return None
    gateway = settings.gateway(seen["gateway"])
    report, error = None, None
    if gateway.configured:
        try:  # no transaction is open here: the gateway may take its 30 s
            report = gateway.query(QueryRequest(seen["txn_ref"], seen["amount"], seen["created_at"],
                                                order_info(seen["dossier_code"])))
        except GatewayUnavailable as exc:
            error = str(exc)
            log.warning("payment_query_failed", txn_ref=seen["txn_ref"], gateway=seen["gateway"], error=error)
    else:
        error = f"{seen['gateway']} not configured"
    moment = now or utcnow()
    with uow.transaction() as session:
        # conditional: only a payment still pending, as it was when queried, takes the answer; a row locked
        # by an IPN right now is left to it (the next tick looks again), so the timer never waits either
        row = _lock_payment(session, payments.c.id == payment_id, payments.c.status == Status.pending.value,
                            skip_locked=True)
        if row is None:
            log.info("payment_query_answer_dropped", txn_ref=seen["txn_ref"], reason="settled or busy meanwhile")
            return None
        if report is not None and report.outcome is not Outcome.pending:
            if report.amount is not None and report.amount != row["amount"]:
                log.error("payment_query_amount_mismatch", txn_ref=row["txn_ref"], local=row["amount"],
                          gateway_amount=report.amount)
            else:
                return apply_report(session, row, report, Source.query, call_id_stack, moment)[1]
        if moment >= row["expires_at"]:
            evidence = {"gateway_answer": report.raw if report else None, "error": error,
                        "expires_at": isoformat(row["expires_at"])}
            _transition(session, row, Status.expired, Source.expiry, evidence, moment)
    return None


def refunds_due(uow, batch=200):
    with uow.read() as session:
        txn_refs = session.execute(
            sa.select(payments.c.txn_ref).where(payments.c.status == Status.refund_pending.value)
            .order_by(payments.c.id).limit(batch)
        ).scalars().all()
    return txn_refs


REFUND_LEASE = timedelta(minutes=2)  # an attempt still unanswered after this (a crashed process) may be retried


def refund_payment(uow, settings, txn_ref, call_id_stack=None, now=None):
    """Ask the gateway to refund a refund_pending payment; True once it is refunded.

    Attempt ``n`` is first claimed with a conditional update (``refund_attempts``
    from ``n - 1`` to ``n``; ``refund_error`` cleared while it is in flight), so
    two processes never send the same refund, and no lock is held while the
    gateway answers. The answer is applied only to that attempt of a payment
    still refund_pending. A refusal leaves the payment refund_pending with
    ``refund_error`` set; the timer tries again.
    """
    moment = now or utcnow()
    with uow.read() as session:
        seen = session.execute(sa.select(payments).where(payments.c.txn_ref == txn_ref)).mappings().first()
    if seen is None or seen["status"] != Status.refund_pending.value:
        return False
    previous = seen["refund_attempts"] or 0
    attempt = previous + 1
    with uow.transaction() as session:
        claimed = session.execute(
            payments.update().where(
                payments.c.id == seen["id"], payments.c.status == Status.refund_pending.value,
                sa.func.coalesce(payments.c.refund_attempts, 0) == previous,
                sa.or_(payments.c.refund_attempts.is_(None), payments.c.refund_attempts == 0,
                       payments.c.refund_error.is_not(None), payments.c.updated_at <= moment - REFUND_LEASE),
            ).values(refund_attempts=attempt, refund_error=None, updated_at=moment)
        ).rowcount == 1
    if not claimed:
        return False
    try:  # no transaction is open here
        result = settings.gateway(seen["gateway"]).refund(RefundRequest(
            txn_ref=seen["txn_ref"], amount=seen["amount"], gateway_txn_no=seen["gateway_txn_no"],
            created_at=seen["created_at"], reason=seen["refund_reason"] or "refund", attempt=attempt,
        ))
    except GatewayUnavailable as exc:
        result = RefundResult(False, reason=str(exc))
    moment = now or utcnow()
    with uow.transaction() as session:
        row = _lock_payment(session, payments.c.id == seen["id"], payments.c.status == Status.refund_pending.value,
                            payments.c.refund_attempts == attempt)
        if row is None:
            log.warning("refund_answer_dropped", txn_ref=txn_ref, attempt=attempt, accepted=result.accepted)
            return False
        if not result.accepted:
            session.execute(payments.update().where(payments.c.id == row["id"]).values(
                refund_error=result.reason or "refused", updated_at=moment))
            log.warning("refund_refused", txn_ref=txn_ref, gateway=row["gateway"], attempt=attempt,
                        reason=result.reason)
            return False
        row = _transition(session, row, Status.refunded, Source.refund,
                          {"gateway_answer": result.raw, "attempt": attempt}, moment,
                          refund_attempts=attempt, refund_error=None, refunded_at=moment)
        _emit(session, "payment_refunded", row, call_id_stack)
    return True


# --- reads ----------------------------------------------------------------------------------


def get_payment(uow, txn_ref):
    with uow.read() as session:
        row = session.execute(sa.select(payments).where(payments.c.txn_ref == txn_ref)).mappings().first()
    if row is None:
        raise PaymentNotFound(f"no payment {txn_ref!r}")
    return row


def list_payments(uow, dossier_code):
    with uow.read() as session:
        rows = session.execute(
            sa.select(payments).where(payments.c.dossier_code == dossier_code).order_by(payments.c.id).limit(200)
        ).mappings().all()
    return rows


def payment_history_of(uow, txn_ref):
    with uow.read() as session:
        rows = session.execute(
            sa.select(payment_history).where(payment_history.c.txn_ref == txn_ref).order_by(payment_history.c.id)
        ).mappings().all()
    return rows
