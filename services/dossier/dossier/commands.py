"""Commands of the dossier service, named in the imperative: what an entry point asks for.

``caller`` is the verified ``portal_shared.auth.Caller`` whose rights the use
case checks; None for a call the service trusts (a test, a tool).
"""
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class SubmitDossier:
    procedure_code: str
    applicant: dict
    form_data: dict
    caller: object = None
    now: datetime | None = None


@dataclass(frozen=True)
class ActOnDossier:
    """``actor`` is only a display name: the history's actor is the caller's subject."""

    code: str
    action: str
    actor: str
    note: str | None = None
    caller: object = None
    now: datetime | None = None


@dataclass(frozen=True)
class ActOnDossiers:
    """Several ``ActOnDossier`` on different dossiers, in one transaction (a group commit of concurrent calls)."""

    commands: tuple


@dataclass(frozen=True)
class RecordPayment:
    """A ``payment_succeeded`` event the payment service confirmed, once per ``consumer``."""

    consumer: str
    event_id: str
    dossier_code: str
    now: datetime | None = None
