"""Domain events of the payment aggregate, named in the past tense.

The message bus turns the first three into the contract's events (through the
outbox, in the transaction that raised them) and ``RefundRequired`` into a
refund request once that transaction has committed.
"""
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class _PaymentOutcome:
    """What every payment event carries: the contract's fields (docs/reference.md section 3.3)."""

    txn_ref: str
    dossier_code: str
    amount: int
    gateway: str
    gateway_txn_no: str | None
    paid_at: datetime | None


@dataclass(frozen=True)
class PaymentSucceeded(_PaymentOutcome):
    pass


@dataclass(frozen=True)
class PaymentFailed(_PaymentOutcome):
    reason: str | None


@dataclass(frozen=True)
class PaymentRefunded(_PaymentOutcome):
    pass


@dataclass(frozen=True)
class RefundRequired:
    """A success that cannot be kept (a second payment, a closed dossier): the money must go back."""

    txn_ref: str
    dossier_code: str
    reason: str
