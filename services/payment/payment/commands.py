"""Commands of the payment service, named in the imperative: what an entry point asks for."""
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class StartPayment:
    dossier_code: str
    gateway: str
    return_url: str
    client_ip: str
    bank_code: str | None = None
    locale: str = "vn"
    now: datetime | None = None


@dataclass(frozen=True)
class LearnCharge:
    """A fee the dossier service answers is due, before its ``payment_requested`` event has arrived."""

    dossier_code: str
    amount: int
    procedure_name: str | None
    agency_code: str | None
    now: datetime | None = None


@dataclass(frozen=True)
class RecordDossierStatus:
    """A ``dossier_status_changed`` event, once per ``consumer``."""

    consumer: str
    event: dict
    now: datetime | None = None


@dataclass(frozen=True)
class AcceptVnpayIpn:
    params: dict
    now: datetime | None = None


@dataclass(frozen=True)
class AcceptMomoIpn:
    body: dict
    now: datetime | None = None


@dataclass(frozen=True)
class SettlePending:
    """Query the gateways about pending payments; expire the stale ones."""

    batch: int = 200
    now: datetime | None = None


@dataclass(frozen=True)
class RefundPayment:
    txn_ref: str
    now: datetime | None = None
