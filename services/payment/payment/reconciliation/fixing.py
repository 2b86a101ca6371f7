"""The fix step: what the file and the gateway both say succeeded goes through the ``Payment`` aggregate.

No SQL here: the payments come locked from the unit of work's repository,
``Payment.settle`` decides (as for an IPN), and ``uow.flush()`` stores them
with their history and passes their events through the bus's in-transaction
handlers (one ``payment_succeeded`` each, in the outbox), inside the run's
transaction.
"""
from datetime import datetime
from typing import NamedTuple

from payment.domain.model import Outcome, Source, Status
from payment.gateways.base import PaymentReport
from portal_shared.timeutil import isoformat


class ConfirmedSuccess(NamedTuple):
    """A line of the file saying a payment succeeded with its amount, which the gateway confirmed."""

    payment_id: int
    line: int
    gateway_txn_no: str | None
    paid_at: datetime


def settle_confirmed(uow, successes, run_id, source, now):
    """Settle the payments of ``successes`` that are still pending or expired; return their findings.

    Each payment is locked (its dossier's charge after it) and re-checked by
    the aggregate once locked: one an IPN or another run settled meanwhile is
    left as it is (the classification then reports its line). A success pays
    the charge, unless the charge is already paid by another payment or gone:
    then the payment moves on to refund_pending and the service's refund loop
    returns the money. Returns one ``fixed`` finding per payment settled.
    """
    by_id = {success.payment_id: success for success in successes}
    findings = []
    for payment in uow.payments.get_many_for_update(sorted(by_id)):
        success = by_id[payment.id]
        old_status = payment.status
        report = PaymentReport(payment.txn_ref, Outcome.succeeded, payment.amount, success.gateway_txn_no,
                               success.paid_at)
        evidence = {"run_id": run_id, "file": source, "line": success.line, "gateway_txn_no": success.gateway_txn_no,
                    "amount": payment.amount, "paid_at": isoformat(success.paid_at)}
        if not payment.settle(report, Source.reconciliation, now, evidence):
            continue
        refund_reason = payment.refund_reason if payment.status is Status.refund_pending else None
        findings.append({
            "run_id": run_id, "outcome": "fixed", "line": success.line, "txn_ref": payment.txn_ref,
            "dossier_code": payment.dossier_code, "gateway_txn_no": payment.gateway_txn_no,
            "local_status": old_status.value, "gateway_status": "success", "local_amount": payment.amount,
            "gateway_amount": payment.amount, "paid_at": payment.paid_at,
            "reason": f"to be refunded: {refund_reason}" if refund_reason else None,
        })
    uow.flush()
    return findings
