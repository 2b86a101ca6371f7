"""The payment state machine and the rules around it.

Plain Python: the use cases load rows, ask these functions what to do and
write the answer back.
"""
import enum
import secrets
from dataclasses import dataclass

from portal_shared.timeutil import to_vn

TXN_REF_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
TXN_REF_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


class Status(str, enum.Enum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"
    expired = "expired"
    refund_pending = "refund_pending"
    refunded = "refunded"


class Source(str, enum.Enum):
    create = "create"
    ipn = "ipn"
    query = "query"
    reconciliation = "reconciliation"
    refund = "refund"
    expiry = "expiry"


class Outcome(str, enum.Enum):
    """What a gateway says about a payment, in our own words."""

    succeeded = "succeeded"
    failed = "failed"
    pending = "pending"  # in progress, or not known to the gateway yet


# A late success for an expired payment is still money received: it is recorded.
TRANSITIONS = {
    Status.pending: {Status.succeeded, Status.failed, Status.expired},
    Status.expired: {Status.succeeded},
    Status.succeeded: {Status.refund_pending},
    Status.refund_pending: {Status.refunded},
    Status.failed: set(),
    Status.refunded: set(),
}

SETTLEABLE = {Status.pending, Status.expired}


class InvalidPaymentTransition(Exception):
    pass


class ChargeStatus(str, enum.Enum):
    due = "due"
    paid = "paid"
    cancelled = "cancelled"


class NoPaymentDue(Exception):
    """The dossier has no fee to pay (unknown dossier, not yet requested, or closed)."""


class AlreadyPaid(Exception):
    """The dossier's fee has been paid already."""


class PaymentNotFound(Exception):
    pass


def check_transition(old, new):
    old, new = Status(old), Status(new)
    if new not in TRANSITIONS[old]:
        raise InvalidPaymentTransition(f"{old.value} → {new.value}")
    return new


def new_txn_ref(now):
    """Unique, alphanumeric, 24 characters: safe as vnp_TxnRef and MoMo orderId.

    No run of 12 digits (``P261126T003005K...``): log masking takes such a run
    for a citizen ID, and a masked txn_ref cannot be traced.
    """
    suffix = secrets.choice(TXN_REF_LETTERS) + "".join(secrets.choice(TXN_REF_ALPHABET) for _ in range(9))
    return f"P{to_vn(now):%y%m%d}T{to_vn(now):%H%M%S}{suffix}"


def check_payable(charge_status):
    """Raise unless a charge in ``charge_status`` (None: no charge) can be paid."""
    if charge_status is None or ChargeStatus(charge_status) is ChargeStatus.cancelled:
        raise NoPaymentDue("no fee is due for this dossier")
    if ChargeStatus(charge_status) is ChargeStatus.paid:
        raise AlreadyPaid("the fee of this dossier has been paid already")


@dataclass
class SuccessDecision:
    """What a confirmed success means for the dossier's charge."""

    keep: bool  # this payment pays the charge
    refund_reason: str | None = None


def decide_success(charge_status, paid_txn_ref, txn_ref):
    """A payment succeeded: does it pay the charge, or must it be refunded?"""
    if charge_status is None:
        return SuccessDecision(False, "no fee due for this dossier")
    charge_status = ChargeStatus(charge_status)
    if charge_status is ChargeStatus.cancelled:
        return SuccessDecision(False, "dossier closed before payment")
    if charge_status is ChargeStatus.paid and paid_txn_ref != txn_ref:
        return SuccessDecision(False, f"dossier already paid by {paid_txn_ref}")
    return SuccessDecision(True)


@dataclass
class IpnVerdict:
    code: str
    message: str
    apply: bool = False


VNPAY_MESSAGES = {
    "00": "Confirm Success",
    "01": "Order not found",
    "02": "Order already confirmed",
    "04": "Invalid amount",
    "97": "Invalid signature",
    "99": "Unknown error",
}


def vnpay_verdict(code):
    return IpnVerdict(code, VNPAY_MESSAGES[code], apply=code == "00")


def judge_notification(payment_status, payment_amount, notified_amount, outcome):
    """VNPay's order of checks after the signature: exists (01), amount (04), not confirmed (02)."""
    if payment_status is None:
        return vnpay_verdict("01")
    if notified_amount != payment_amount:
        return vnpay_verdict("04")
    status = Status(payment_status)
    if status is Status.pending:
        return vnpay_verdict("00")
    if status is Status.expired and outcome is Outcome.succeeded:
        return vnpay_verdict("00")
    return vnpay_verdict("02")


CLOSING_STATUSES = {"stopped", "withdrawn"}
