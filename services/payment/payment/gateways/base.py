"""The gateway boundary: neutral requests and results, one interface per provider.

Adapters speak the provider's wire format and translate its codes into our
``Outcome``; they never change payment state themselves (the use cases do).
Every result keeps the provider's raw answer for the payment history.
"""
import abc
import hmac
from dataclasses import dataclass, field
from datetime import datetime

from payment.domain.model import Outcome


class GatewayUnavailable(Exception):
    """The gateway has no credentials, cannot be reached, or answered nonsense."""


class InvalidSignature(Exception):
    """A callback or answer whose signature does not verify."""


class MalformedMessage(Exception):
    """A callback whose fields cannot be understood."""


class ForeignMerchant(MalformedMessage):
    """A correctly signed callback about another merchant (VNPay ``vnp_TmnCode``, MoMo ``partnerCode``)."""


def same_digest(expected, given):
    """Constant-time comparison of hex digests; non-ASCII junk in ``given`` is a mismatch, not a TypeError."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True)
class CheckoutRequest:
    txn_ref: str
    amount: int  # VND
    order_info: str
    return_url: str
    client_ip: str
    ipn_url: str
    created_at: datetime
    expires_at: datetime
    bank_code: str | None = None
    locale: str = "vn"


@dataclass(frozen=True)
class CheckoutResult:
    pay_url: str
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PaymentReport:
    """A gateway's statement about one payment (an IPN or a query answer)."""

    txn_ref: str
    outcome: Outcome
    amount: int | None = None  # VND
    gateway_txn_no: str | None = None
    paid_at: datetime | None = None
    reason: str | None = None
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class QueryRequest:
    txn_ref: str
    amount: int
    created_at: datetime
    order_info: str


@dataclass(frozen=True)
class RefundRequest:
    txn_ref: str
    amount: int
    gateway_txn_no: str | None
    created_at: datetime  # of the original payment
    reason: str
    attempt: int = 1


@dataclass(frozen=True)
class RefundResult:
    accepted: bool
    reason: str | None = None
    raw: dict = field(default_factory=dict)


class Gateway(abc.ABC):
    """One payment provider. ``configured`` is False when its credentials are missing."""

    name = None
    timeout = 30

    @property
    @abc.abstractmethod
    def configured(self):
        ...

    def refuse_amount(self, amount):
        """Why this gateway cannot take ``amount`` VND, or None."""
        return None

    def require_configured(self):
        if not self.configured:
            raise GatewayUnavailable(f"{self.name} is not configured (no credentials)")

    @abc.abstractmethod
    def create_checkout(self, request: CheckoutRequest) -> CheckoutResult:
        ...

    @abc.abstractmethod
    def parse_notification(self, params: dict) -> PaymentReport:
        """Verify and translate an IPN; raises ``InvalidSignature`` or ``MalformedMessage``."""

    @abc.abstractmethod
    def query(self, request: QueryRequest) -> PaymentReport:
        ...

    @abc.abstractmethod
    def refund(self, request: RefundRequest) -> RefundResult:
        ...

    def _post_json(self, url, body):
        """POST JSON and return the decoded answer; any transport problem is ``GatewayUnavailable``."""
        import requests

        try:
            response = requests.post(url, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise GatewayUnavailable(f"{self.name} unreachable: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise GatewayUnavailable(f"{self.name} answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise GatewayUnavailable(f"{self.name} answered HTTP {response.status_code} without JSON") from None
        if not isinstance(answer, dict):
            raise GatewayUnavailable(f"{self.name} answered an unexpected JSON document")
        return answer
