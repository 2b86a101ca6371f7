"""Notifications: their vocabulary, which events produce which messages, the retry policy, the aggregate.

Plain Python: no ORM, no framework. The ``Notification`` aggregate decides
its own state changes and records ``DeliveryQueued`` whenever it is handed to
its channel's delivery queue; the unit of work turns that event into the
delivery message in the outbox, in the same transaction. The bulk statements
of the delivery pipeline (claims, outcomes, receipts) are conditional updates
in the repository; the rules they apply live here (``attempt_result``,
``RECEIPT_APPLIES_TO``).
"""
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt's outcome writes on its notification."""

    status: str
    provider: str | None
    reference: str | None
    error: str | None
    sent_at: datetime | None
    next_attempt_at: datetime | None


def attempt_result(outcome, attempts, policy, now):
    """The state an attempt leaves its notification in: sent (with the provider's reference), a retry
    after the back-off, or a final failure."""
    status = status_after_attempt(outcome, attempts, policy)
    return AttemptResult(
        status=status, provider=outcome.provider,
        reference=outcome.reference if status == Status.SENT else None, error=outcome.error,
        sent_at=now if status == Status.SENT else None,
        next_attempt_at=now + policy.delay_after(attempts) if status == Status.TEMPORARY_FAILURE else None,
    )


# a provider's delivery receipt moves only a message still in flight: never one that failed temporarily
# (it waits for its retry), nor a final one
RECEIPT_APPLIES_TO = (Status.SENDING, Status.SENT)
RECEIPT_STATUSES = (Status.DELIVERED, Status.PERMANENT_FAILURE)
# until a queued message is claimed, the timer leaves its row alone this long (then queues it again)
QUEUED_GRACE = timedelta(seconds=60)
LOST_ON_LAST_ATTEMPT = "lost while sending on the last attempt"
# what a pruned text becomes (``use_cases.prune_bodies``)
PRUNED_BODY = ""


@dataclass(frozen=True)
class DeliveryQueued:
    """A notification was handed to its channel's delivery queue, to be claimed at ``attempts``."""

    notification_id: str
    channel: str
    attempts: int


@dataclass(frozen=True)
class Contact:
    """Who to write to about a dossier: payment events carry no applicant, dossier events do."""

    dossier_code: str
    procedure_name: str | None
    full_name: str | None
    phone: str | None
    email: str | None


@dataclass(frozen=True)
class FirstSight:
    """What one event writes if, and only if, its inbox ``claim`` (``(consumer, event_id)``) is new: the
    applicant it names and the notifications it decided (``Notification.create``, not yet stored)."""

    claim: tuple
    contact: Contact
    notifications: tuple = ()


@dataclass(frozen=True)
class Message:
    """What a channel sender needs to deliver one notification."""

    id: str
    channel: str
    recipient: str
    subject: str | None
    body: str
    html_body: str | None


@dataclass
class Notification:
    """One message to one recipient on one channel, with its delivery state.

    The text is rendered when it is created, so retries and operator resends
    send exactly what was decided then.
    """

    id: str
    channel: str
    recipient: str
    template: str
    reference: str | None
    body: str
    status: str
    attempts: int
    created_at: datetime
    updated_at: datetime
    event_id: str | None = None
    subject: str | None = None
    html_body: str | None = None
    segments: int | None = None
    provider: str | None = None
    provider_reference: str | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    events: list = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def create(cls, channel, recipient, template, reference, text, now, event_id=None):
        """A new notification with its rendered ``text`` (``RenderedSms`` or ``RenderedEmail``), queued."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        notification = cls(
            id=str(uuid.uuid4()), channel=channel, recipient=recipient, template=template, reference=reference,
            event_id=event_id, status=Status.CREATED, attempts=0, created_at=now, updated_at=now,
            # the queued message delivers it; the timer only steps in if nobody claimed it by then
            next_attempt_at=now + QUEUED_GRACE, body=text.text,
            subject=getattr(text, "subject", None), html_body=getattr(text, "html", None),
            segments=getattr(text, "segments", None),
        )
        notification.events.append(DeliveryQueued(notification.id, channel, 0))
        return notification

    @property
    def message(self):
        return Message(self.id, self.channel, self.recipient, self.subject, self.body, self.html_body)

    def queue_again(self, now, policy):
        """The timer found it due (a retry, a resend, an expired lease): queue it, or give up on it.

        Returns False when it was lost while sending on its last attempt (now ``technical_failure``).
        """
        if self.status == Status.SENDING:
            if policy.exhausted(self.attempts):
                self._change(Status.TECHNICAL_FAILURE, now, error=LOST_ON_LAST_ATTEMPT)
                self.next_attempt_at = None
                return False
            # its consumer and its message were lost: a retry at the same attempt count
            self._change(Status.TEMPORARY_FAILURE, now, error="lease expired while sending")
        self.next_attempt_at = now + QUEUED_GRACE
        self.events.append(DeliveryQueued(self.id, self.channel, self.attempts))
        return True

    def resend(self, now):
        """Operator: a failed notification goes back to ``created`` with fresh attempts, queued again."""
        if self.status not in Status.RESENDABLE:
            raise ValueError(f"a {self.status} notification is not sent again")
        self._change(Status.CREATED, now)
        self.attempts, self.next_attempt_at = 0, now + QUEUED_GRACE
        self.events.append(DeliveryQueued(self.id, self.channel, 0))

    def _change(self, status, now, error=None):
        self.status, self.updated_at, self.lease_until = status, now, None
        if error is not None:
            self.last_error = error
