"""MoMo e-wallet gateway, API v2 (see docs/protocols.md)."""
import hashlib
import hmac
import re
import uuid
from datetime import datetime, timezone

from payment.domain.model import Outcome
from payment.gateways.base import (
    CheckoutResult,
    ForeignMerchant,
    Gateway,
    GatewayUnavailable,
    InvalidSignature,
    MalformedMessage,
    PaymentReport,
    RefundResult,
    same_digest,
)
from portal_shared.timeutil import utcnow

CREATE_PATH = "/v2/gateway/api/create"
QUERY_PATH = "/v2/gateway/api/query"
REFUND_PATH = "/v2/gateway/api/refund"

CREATE_FIELDS = ("accessKey", "amount", "extraData", "ipnUrl", "orderId", "orderInfo", "partnerCode", "redirectUrl",
                 "requestId", "requestType")
IPN_FIELDS = ("accessKey", "amount", "extraData", "message", "orderId", "orderInfo", "orderType", "partnerCode",
              "payType", "requestId", "responseTime", "resultCode", "transId")
QUERY_FIELDS = ("accessKey", "orderId", "partnerCode", "requestId")
REFUND_FIELDS = ("accessKey", "amount", "description", "orderId", "partnerCode", "requestId", "transId")

INTEGER_FIELDS = {"amount", "resultCode", "transId", "responseTime"}
HEX64 = re.compile(r"[0-9a-f]{64}")
PENDING_CODES = {9000, 1000, 7000, 7002, 8000}
NOT_FOUND_CODES = {42}  # the order is unknown to MoMo (yet)
MIN_AMOUNT, MAX_AMOUNT = 1_000, 50_000_000
LANGUAGES = {"vn": "vi", "en": "en"}


def raw_signature(values, names):
    """``key=value&...`` in the given (alphabetical) order, raw values."""
    return "&".join(f"{name}={'' if values.get(name) is None else values.get(name)}" for name in names)


def hmac_sha256(secret, text):
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def outcome_of(result_code):
    if result_code == 0:
        return Outcome.succeeded
    if result_code in PENDING_CODES:
        return Outcome.pending
    return Outcome.failed


class MomoGateway(Gateway):
    name = "momo"

    def __init__(self, partner_code, access_key, secret_key, api_base):
        self.partner_code = partner_code
        self._access_key = access_key
        self._secret = secret_key
        self.api_base = (api_base or "").rstrip("/")

    @property
    def configured(self):
        return bool(self.partner_code and self._access_key and self._secret)

    def sign(self, values, names):
        return hmac_sha256(self._secret, raw_signature({**values, "accessKey": self._access_key}, names))

    @staticmethod
    def accepts_amount(amount):
        return MIN_AMOUNT <= amount <= MAX_AMOUNT

    def refuse_amount(self, amount):
        if self.accepts_amount(amount):
            return None
        return f"MoMo takes {MIN_AMOUNT:,} to {MAX_AMOUNT:,} VND; this fee is {amount} VND"

    def create_checkout(self, request):
        self.require_configured()
        body = {
            "partnerCode": self.partner_code,
            "requestId": request.txn_ref,  # MoMo is idempotent by requestId; one create per txn_ref
            "amount": request.amount,
            "orderId": request.txn_ref,
            "orderInfo": request.order_info,
            "redirectUrl": request.return_url,
            "ipnUrl": request.ipn_url,
            "requestType": "captureWallet",
            "extraData": "",
            "lang": LANGUAGES.get(request.locale, "vi"),
        }
        body["signature"] = self.sign(body, CREATE_FIELDS)
        answer = self._post_json(self.api_base + CREATE_PATH, body)
        if answer.get("resultCode") != 0 or not answer.get("payUrl"):
            raise GatewayUnavailable(f"momo create answered {answer.get('resultCode')}: {answer.get('message')}")
        return CheckoutResult(pay_url=answer["payUrl"], raw=answer)

    def parse_notification(self, params):
        if not isinstance(params, dict):
            raise MalformedMessage("the IPN body is not a JSON object")
        missing = [name for name in IPN_FIELDS[1:] + ("signature",) if name not in params]
        if missing:
            raise MalformedMessage(f"missing IPN field(s): {', '.join(missing)}")
        for name in IPN_FIELDS[1:] + ("signature",):
            value = params[name]
            if name in INTEGER_FIELDS:
                if not _exact_integer(value):
                    raise MalformedMessage(f"{name} is not a whole number")
            elif not isinstance(value, str):
                raise MalformedMessage(f"{name} is not text")
        if not self.configured:
            raise InvalidSignature("momo is not configured: cannot verify")
        given = params["signature"].lower()
        if not HEX64.fullmatch(given) or not same_digest(self.sign(params, IPN_FIELDS), given):
            raise InvalidSignature("signature does not verify")
        if params["partnerCode"] != self.partner_code:
            raise ForeignMerchant("partnerCode is not ours")
        txn_ref = params["orderId"]
        amount = int(params["amount"])
        result_code = int(params["resultCode"])
        outcome = outcome_of(result_code)
        paid_at = None
        if outcome is Outcome.succeeded:
            paid_at = _from_millis(params["responseTime"]) or utcnow()
        return PaymentReport(
            txn_ref=txn_ref,
            outcome=outcome,
            amount=amount,
            gateway_txn_no=str(params["transId"]) if params.get("transId") not in (None, "") else None,
            paid_at=paid_at,
            reason=None if outcome is Outcome.succeeded else f"resultCode={result_code}: {params.get('message')}",
            raw=dict(params),
        )

    def query(self, request):
        self.require_configured()
        body = {
            "partnerCode": self.partner_code,
            "requestId": uuid.uuid4().hex,
            "orderId": request.txn_ref,
            "lang": "vi",
        }
        body["signature"] = self.sign(body, QUERY_FIELDS)
        answer = self._post_json(self.api_base + QUERY_PATH, body)
        try:
            result_code = int(answer.get("resultCode"))
        except (TypeError, ValueError):
            raise GatewayUnavailable("momo query answer without resultCode") from None
        if result_code in NOT_FOUND_CODES:
            return PaymentReport(request.txn_ref, Outcome.pending, reason=f"resultCode={result_code}", raw=answer)
        if result_code not in PENDING_CODES and 0 < result_code < 1000:
            # system errors (auth, format, rate limit): they say nothing about the payment
            raise GatewayUnavailable(f"momo query answered {result_code}: {answer.get('message')}")
        outcome = outcome_of(result_code)
        try:
            amount = int(answer["amount"]) if answer.get("amount") is not None else None
        except (TypeError, ValueError):
            amount = None
        return PaymentReport(
            txn_ref=request.txn_ref,
            outcome=outcome,
            amount=amount,
            gateway_txn_no=str(answer["transId"]) if answer.get("transId") not in (None, "", 0) else None,
            paid_at=(_from_millis(answer.get("responseTime")) or utcnow()) if outcome is Outcome.succeeded else None,
            reason=None if outcome is Outcome.succeeded else f"resultCode={result_code}: {answer.get('message')}",
            raw=answer,
        )

    def refund(self, request):
        self.require_configured()
        try:
            trans_id = int(request.gateway_txn_no)
        except (TypeError, ValueError):
            return RefundResult(False, reason="no MoMo transId known for this payment")
        body = {
            "partnerCode": self.partner_code,
            "orderId": f"{request.txn_ref}R{request.attempt}",  # MoMo wants a new orderId per refund request
            "requestId": uuid.uuid4().hex,
            "amount": request.amount,
            "transId": trans_id,
            "lang": "vi",
            "description": request.reason[:255],
        }
        body["signature"] = self.sign(body, REFUND_FIELDS)
        answer = self._post_json(self.api_base + REFUND_PATH, body)
        if answer.get("resultCode") == 0:
            return RefundResult(True, raw=answer)
        return RefundResult(False, reason=f"resultCode={answer.get('resultCode')}: {answer.get('message')}", raw=answer)


def _exact_integer(value):
    """MoMo sends these as JSON integers: a fraction, a digit string or a bool is malformed."""
    return isinstance(value, int) and not isinstance(value, bool) and -(10 ** 18) < value < 10 ** 18


def _from_millis(value):
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
