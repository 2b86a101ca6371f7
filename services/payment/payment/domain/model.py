"""The payment aggregate: statuses, transitions as data, the charge it pays, the events it raises.

Plain Python (no Nameko, no SQLAlchemy). ``Payment`` is the only place a
payment's status changes: every transition appends a ``HistoryEntry`` and,
where the contract has an event for it, a domain event (``payment/domain/events.py``)
that the unit of work hands to the message bus.
"""
import enum
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from payment.domain import events
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


# action → (statuses it may start from, status it leads to).
# A late success for an expired payment is still money received: it is recorded.
TRANSITIONS = {
    "succeed": (frozenset({Status.pending, Status.expired}), Status.succeeded),
    "fail": (frozenset({Status.pending}), Status.failed),
    "expire": (frozenset({Status.pending}), Status.expired),
    "queue_refund": (frozenset({Status.succeeded}), Status.refund_pending),
    "refund": (frozenset({Status.refund_pending}), Status.refunded),
}
ACTIONS = tuple(TRANSITIONS)
SETTLEABLE = TRANSITIONS["succeed"][0]


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
    """``new`` if some action leads from ``old`` to it, else ``InvalidPaymentTransition``."""
    old, new = Status(old), Status(new)
    if not any(old in sources and target is new for sources, target in TRANSITIONS.values()):
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


CLOSING_STATUSES = {"stopped", "withdrawn"}


class Notification(str, enum.Enum):
    """What a verified IPN means for a payment, before any vendor code is chosen."""

    unknown = "unknown"  # no such payment at this gateway
    amount_mismatch = "amount_mismatch"
    apply = "apply"
    already_confirmed = "already_confirmed"


def judge_notification(payment_status, payment_amount, notified_amount, outcome):
    """The checks after the signature, in VNPay's order: exists, amount, not yet confirmed."""
    if payment_status is None:
        return Notification.unknown
    if notified_amount != payment_amount:
        return Notification.amount_mismatch
    status = Status(payment_status)
    if status is Status.pending or (status is Status.expired and outcome is Outcome.succeeded):
        return Notification.apply
    return Notification.already_confirmed


@dataclass(frozen=True)
class HistoryEntry:
    """One row of ``payment_history``: who moved the payment, and on what evidence."""

    old_status: Status | None
    new_status: Status
    source: Source
    at: datetime
    evidence: dict | None = None


@dataclass
class Charge:
    """The fee a dossier owes, as the dossier service announced it; paid by at most one payment."""

    dossier_code: str
    amount: int
    status: ChargeStatus
    paid_txn_ref: str | None = None
    procedure_name: str | None = None
    agency_code: str | None = None
    source_event_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    changed: bool = False

    def check_payable(self):
        check_payable(self.status.value)

    def announce(self, amount, procedure_name, agency_code, event_id, now):
        """The dossier asks for the fee (again): due with this amount, unless already paid."""
        if self.status is ChargeStatus.paid:
            return
        if (self.amount, self.status, self.source_event_id, self.procedure_name, self.agency_code) == \
                (amount, ChargeStatus.due, event_id, procedure_name, agency_code):
            return  # just created from this very announcement: nothing to write
        self.amount, self.status, self.source_event_id = amount, ChargeStatus.due, event_id
        self.procedure_name, self.agency_code = procedure_name, agency_code
        self._touch(now)

    def refund_reason_for(self, txn_ref):
        """None when a success of ``txn_ref`` pays this charge, else why it must be refunded."""
        return decide_success(self.status.value, self.paid_txn_ref, txn_ref).refund_reason

    def pay(self, txn_ref, now):
        self.status, self.paid_txn_ref = ChargeStatus.paid, txn_ref
        self._touch(now)

    def cancel(self, now):
        self.status = ChargeStatus.cancelled
        self._touch(now)

    def _touch(self, now):
        self.updated_at, self.changed = now, True


@dataclass
class Payment:
    """One attempt to pay a dossier's charge at one gateway."""

    txn_ref: str
    dossier_code: str
    amount: int
    gateway: str
    status: Status
    created_at: datetime
    expires_at: datetime
    updated_at: datetime
    id: int | None = None
    pay_url: str | None = None
    gateway_txn_no: str | None = None
    paid_at: datetime | None = None
    client_ip: str | None = None
    refund_reason: str | None = None
    refund_error: str | None = None
    refund_attempts: int = 0
    refunded_at: datetime | None = None
    charge: Charge | None = None  # loaded (and locked) with the payment when a success may pay it
    history: list = field(default_factory=list)  # entries not yet stored
    events: list = field(default_factory=list)  # events not yet handed to the bus
    changed: bool = False

    @classmethod
    def start(cls, txn_ref, charge, gateway, client_ip, now, expires_at):
        """A pending payment of ``charge`` at ``gateway``; raises unless the charge is due."""
        charge.check_payable()
        payment = cls(txn_ref=txn_ref, dossier_code=charge.dossier_code, amount=int(charge.amount), gateway=gateway,
                      status=Status.pending, created_at=now, expires_at=expires_at, updated_at=now,
                      client_ip=client_ip)
        payment.history.append(HistoryEntry(None, Status.pending, Source.create, now, {"client_ip": client_ip}))
        return payment

    def is_reusable(self, gateway, amount, after):
        """An unexpired pending attempt at ``gateway`` for ``amount`` with a pay URL to hand out again."""
        return (self.status is Status.pending and self.gateway == gateway and self.amount == amount
                and self.pay_url is not None and self.expires_at > after)

    def checkout_ready(self, pay_url):
        self.pay_url, self.changed = pay_url, True

    def judge(self, notified_amount, outcome):
        return judge_notification(self.status.value, self.amount, notified_amount, outcome)

    def settle(self, report, source, now, evidence=None):
        """Apply a gateway's verified statement (``gateways.PaymentReport``); True when the status changed.

        A success pays the charge, unless the charge is gone or paid by another
        payment: then the payment moves on to refund_pending (``RefundRequired``).
        """
        if report.outcome is Outcome.pending or self.status not in SETTLEABLE:
            return False
        evidence = dict(evidence) if evidence is not None else {"gateway_answer": report.raw}
        if report.outcome is Outcome.failed:
            if self.status is not Status.pending:
                return False  # an expired payment that failed stays expired
            self.fail(report.reason, source, now, {**evidence, "reason": report.reason}, report.gateway_txn_no)
            return True
        self._enter("succeed", source, now, evidence, gateway_txn_no=report.gateway_txn_no or self.gateway_txn_no,
                    paid_at=report.paid_at or now)
        self.events.append(events.PaymentSucceeded(**self._event_fields()))
        reason = self.charge.refund_reason_for(self.txn_ref) if self.charge is not None else \
            decide_success(None, None, self.txn_ref).refund_reason
        if reason is None:
            self.charge.pay(self.txn_ref, now)
        else:
            self.queue_refund(reason, now)
        return True

    def fail(self, reason, source, now, evidence=None, gateway_txn_no=None):
        self._enter("fail", source, now, evidence if evidence is not None else {"reason": reason},
                    gateway_txn_no=gateway_txn_no or self.gateway_txn_no)
        self.events.append(events.PaymentFailed(**self._event_fields(), reason=reason))

    def expire(self, now, evidence=None):
        """pending → expired once ``expires_at`` has passed; False before that."""
        if now < self.expires_at:
            return False
        self._enter("expire", Source.expiry, now, evidence)
        return True

    def queue_refund(self, reason, now, evidence=None):
        """succeeded → refund_pending; ``RefundRequired`` asks for the money to go back."""
        self._enter("queue_refund", Source.refund, now, {"reason": reason, **(evidence or {})}, refund_reason=reason)
        self.events.append(events.RefundRequired(self.txn_ref, self.dossier_code, reason))

    def claim_refund_attempt(self, now, lease):
        """The number of the next refund attempt, or None while one is in flight (younger than ``lease``)."""
        if self.status is not Status.refund_pending:
            return None
        in_flight = self.refund_attempts and self.refund_error is None and self.updated_at > now - lease
        if in_flight:
            return None
        self.refund_attempts, self.refund_error, self.updated_at = self.refund_attempts + 1, None, now
        return self.refund_attempts

    def refund_accepted(self, result, attempt, now):
        """The gateway took the refund (``gateways.RefundResult``): refund_pending → refunded."""
        self._enter("refund", Source.refund, now, {"gateway_answer": result.raw, "attempt": attempt},
                    refund_attempts=attempt, refund_error=None, refunded_at=now)
        self.events.append(events.PaymentRefunded(**self._event_fields()))

    def refund_refused(self, reason, now):
        """The gateway refused: still refund_pending, with the reason; the timer tries again."""
        if self.status is not Status.refund_pending:
            raise InvalidPaymentTransition(f"no refund is pending for a payment {self.status.value}")
        self.refund_error, self.updated_at, self.changed = reason or "refused", now, True

    def _enter(self, action, source, now, evidence, **values):
        allowed_from, target = TRANSITIONS[action]
        if self.status not in allowed_from:
            raise InvalidPaymentTransition(f"cannot {action} a payment {self.status.value}")
        self.history.append(HistoryEntry(self.status, target, Source(source), now, evidence))
        self.status, self.updated_at, self.changed = target, now, True
        for name, value in values.items():
            setattr(self, name, value)

    def _event_fields(self):
        return {"txn_ref": self.txn_ref, "dossier_code": self.dossier_code, "amount": int(self.amount),
                "gateway": self.gateway, "gateway_txn_no": self.gateway_txn_no, "paid_at": self.paid_at}
