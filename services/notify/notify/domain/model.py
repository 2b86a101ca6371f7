"""Notification vocabulary, which events produce which messages, and the retry policy."""
from dataclasses import dataclass
from datetime import timedelta

CHANNELS = ("sms", "email")


class Status:
    CREATED = "created"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    TEMPORARY_FAILURE = "temporary_failure"
    PERMANENT_FAILURE = "permanent_failure"
    TECHNICAL_FAILURE = "technical_failure"

    ALL = (CREATED, SENDING, SENT, DELIVERED, TEMPORARY_FAILURE, PERMANENT_FAILURE, TECHNICAL_FAILURE)
    # waiting for a (first or next) attempt
    PENDING = (CREATED, TEMPORARY_FAILURE)
    # an operator may send these again
    RESENDABLE = (TECHNICAL_FAILURE, PERMANENT_FAILURE, TEMPORARY_FAILURE)


# dossier status → message kind; submitted and processing send nothing (the
# payment receipt covers the move to processing after a payment)
DOSSIER_STATUS_KINDS = {
    "accepted": "accepted",
    "not_accepted": "not_accepted",
    "payment_requested": "payment_requested",
    "supplement_requested": "supplement_requested",
    "processed": "processed",
    "returned": "returned",
    "stopped": "stopped",
    "withdrawn": "withdrawn",
}
PAYMENT_EVENT_KINDS = {"payment_succeeded": "payment_succeeded", "payment_refunded": "payment_refunded"}
MESSAGE_KINDS = tuple(DOSSIER_STATUS_KINDS.values()) + tuple(PAYMENT_EVENT_KINDS.values())


def kind_for_dossier_status(new_status):
    """The message kind for a dossier entering ``new_status``, or None when nothing is sent."""
    return DOSSIER_STATUS_KINDS.get(new_status)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential back-off: ``base * 2**(attempt-1)``, at most ``max_attempts`` tries."""

    max_attempts: int = 5
    base_seconds: float = 30.0
    max_delay_seconds: float = 6 * 3600.0

    def delay_after(self, attempts):
        return timedelta(seconds=min(self.max_delay_seconds, self.base_seconds * 2 ** max(0, attempts - 1)))

    def exhausted(self, attempts):
        return attempts >= self.max_attempts


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt came to, in our own vocabulary.

    ``status`` is sent, temporary_failure or permanent_failure (the recipient
    can never get it); ``provider`` and ``reference`` name who took it.
    """

    status: str
    provider: str | None = None
    reference: str | None = None
    error: str | None = None


def status_after_attempt(outcome, attempts, policy):
    """The notification status after an attempt: a temporary failure past the last try is technical."""
    if outcome.status == Status.TEMPORARY_FAILURE and policy.exhausted(attempts):
        return Status.TECHNICAL_FAILURE
    return outcome.status


# eSMS delivery receipt: SendStatus 5 = sent to handset, 4 = refused, 6 = deleted
def status_from_esms_receipt(send_status, send_failed=None, send_success=None):
    """Map an eSMS receipt to delivered / permanent_failure, or None when it is not final."""
    try:
        code = int(send_status)
    except (TypeError, ValueError):
        return None
    if code == 5:
        if send_failed not in (None, "", 0, "0") and str(send_success or "0") in ("0", ""):
            return Status.PERMANENT_FAILURE
        return Status.DELIVERED
    if code in (4, 6):
        return Status.PERMANENT_FAILURE
    return None
