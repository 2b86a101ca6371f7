"""Commands of the notify service, named in the imperative: what an entry point asks for."""
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class NotifyDossierStatusChanged:
    """A ``dossier_status_changed`` event, once per ``consumer``: remember the applicant, write to them."""

    consumer: str
    event: dict
    now: datetime | None = None


@dataclass(frozen=True)
class NotifyDossierStatusChanges:
    """Several ``NotifyDossierStatusChanged`` in one transaction (a group commit of concurrent workers)."""

    commands: tuple


@dataclass(frozen=True)
class NotifyPaymentEvent:
    """A payment event (``kind`` names the message: a receipt or a refund), once per ``consumer``."""

    consumer: str
    kind: str
    event: dict
    now: datetime | None = None


@dataclass(frozen=True)
class SendNotification:
    """An operator's message (the ``send_notification`` RPC), its request already validated."""

    channel: str
    recipient: str
    template: str
    params: dict
    reference: str | None = None
    now: datetime | None = None


@dataclass(frozen=True)
class QueueDueNotifications:
    """The timer's safety net: queue due retries, resends and rows whose lease ran out."""

    now: datetime | None = None


@dataclass(frozen=True)
class ClaimDeliveries:
    """Claim the notifications of several delivery messages (``use_cases.Delivery``) for sending."""

    deliveries: tuple
    now: datetime | None = None


@dataclass(frozen=True)
class RecordOutcomes:
    """Record the outcomes of several attempts: ``results`` = ((Claimed, Outcome), ...)."""

    results: tuple
    now: datetime | None = None


@dataclass(frozen=True)
class ApplySmsReceipt:
    """A provider's delivery receipt, its code already translated into ``status`` by the provider's adapter."""

    provider: str
    provider_reference: str
    status: str | None
    notification_id: str | None = None
    now: datetime | None = None


@dataclass(frozen=True)
class ResendNotifications:
    """Operator: failed notifications (one, or every one of a reference) go back to the queue."""

    notification_id: str | None = None
    reference: str | None = None
    now: datetime | None = None


@dataclass(frozen=True)
class PruneBodies:
    """Blank the texts of delivered notifications older than ``retention_days``."""

    retention_days: float
    now: datetime | None = None
