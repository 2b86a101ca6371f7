"""Commands of portal_sync, named in the imperative: what an entry point, the delivery loop or a tool asks for."""
from dataclasses import dataclass
from datetime import datetime

from portal_sync.domain.records import PaidFee


@dataclass(frozen=True)
class RecordStatusChange:
    """A ``dossier_status_changed``, once per ``consumer``: the dossier is read again and sent."""

    consumer: str
    event_id: str
    dossier_code: str
    now: datetime | None = None


@dataclass(frozen=True)
class RecordStatusChanges:
    """Several ``RecordStatusChange`` in one transaction (a group commit of concurrent workers)."""

    commands: tuple


@dataclass(frozen=True)
class RecordFee:
    """A ``payment_succeeded`` (or, ``refunded``, a ``payment_refunded``), once per ``consumer``."""

    consumer: str
    event_id: str
    dossier_code: str
    fee: PaidFee
    refunded: bool = False
    now: datetime | None = None


@dataclass(frozen=True)
class DeliverDue:
    """Claim up to ``batch_size`` due dossiers and send them to the portal."""

    batch_size: int = 50
    backoff_seconds: float = 2.0
    max_backoff_seconds: float = 300.0
    now: datetime | None = None


@dataclass(frozen=True)
class Release:
    """Unpark (``dossier_codes``, or every parked dossier when None) and let delivery take them again."""

    dossier_codes: tuple | None = None
    resend: bool = False
    from_scratch: bool = False
    now: datetime | None = None


@dataclass(frozen=True)
class TrackBackfillPage:
    """Track every dossier of one ``list_dossiers`` page and move the backfill's cursor."""

    dossiers: list
    next_cursor: int
    total: int
    now: datetime | None = None


@dataclass(frozen=True)
class FinishBackfill:
    restart: bool = False
    now: datetime | None = None


@dataclass(frozen=True)
class CheckDrift:
    """``TraCuuHoSo`` each ``(dossier_code, sent_status)``; resend what the portal lost or shows otherwise."""

    candidates: list
    now: datetime | None = None
