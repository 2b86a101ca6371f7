"""VNPay payment gateway, API version 2.1.0 (see docs/protocols.md)."""
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from urllib.parse import quote_plus

from payment.domain.model import Notification, Outcome, judge_notification as judge
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
from portal_shared.timeutil import VN_TZ, to_vn, utcnow

VERSION = "2.1.0"
SIGNATURE_FIELDS = ("vnp_SecureHash", "vnp_SecureHashType")
QUERY_HASH_ORDER = ("RequestId", "Version", "Command", "TmnCode", "TxnRef", "TransactionDate", "CreateDate", "IpAddr",
                    "OrderInfo")
QUERY_ANSWER_HASH_ORDER = ("ResponseId", "Command", "ResponseCode", "Message", "TmnCode", "TxnRef", "Amount",
                           "BankCode", "PayDate", "TransactionNo", "TransactionType", "TransactionStatus", "OrderInfo",
                           "PromotionCode", "PromotionAmount")
REFUND_HASH_ORDER = ("RequestId", "Version", "Command", "TmnCode", "TransactionType", "TxnRef", "Amount",
                     "TransactionNo", "TransactionDate", "CreateBy", "CreateDate", "IpAddr", "OrderInfo")
REFUND_ANSWER_HASH_ORDER = ("ResponseId", "Command", "ResponseCode", "Message", "TmnCode", "TxnRef", "Amount",
                            "BankCode", "PayDate", "TransactionNo", "TransactionType", "TransactionStatus", "OrderInfo")

RESPONSE_CODES = {
    "00": "success",
    "07": "suspected fraud",
    "09": "card not registered for internet banking",
    "10": "card authentication failed too often",
    "11": "payment timed out",
    "12": "card locked",
    "13": "wrong OTP",
    "24": "customer cancelled",
    "51": "insufficient funds",
    "65": "daily limit exceeded",
    "75": "bank under maintenance",
    "79": "wrong password too often",
    "99": "other error",
}
PENDING_TRANSACTION_STATUSES = {"01"}

# What our IPN endpoint answers VNPay (RspCode, Message): VNPay retries on anything but 00 and 02.
IPN_ANSWERS = {
    "00": "Confirm Success",
    "01": "Order not found",
    "02": "Order already confirmed",
    "04": "Invalid amount",
    "97": "Invalid signature",
    "99": "Unknown error",
}
RSP_CODES = {
    Notification.unknown: "01",
    Notification.amount_mismatch: "04",
    Notification.apply: "00",
    Notification.already_confirmed: "02",
}
REQUIRED_IPN_FIELDS = ("vnp_TmnCode", "vnp_TxnRef", "vnp_Amount", "vnp_ResponseCode")
DIGITS = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class IpnVerdict:
    code: str
    message: str
    apply: bool = False


def vnpay_verdict(code):
    """The answer to VNPay for one of ``IPN_ANSWERS``' codes."""
    return IpnVerdict(code, IPN_ANSWERS[code], apply=code == "00")


def verdict_for(notification):
    """The RspCode for the domain's ``Notification``."""
    return vnpay_verdict(RSP_CODES[notification])


def judge_notification(payment_status, payment_amount, notified_amount, outcome):
    """VNPay's order of checks after the signature: exists (01), amount (04), not confirmed (02)."""
    return verdict_for(judge(payment_status, payment_amount, notified_amount, outcome))


def vn_timestamp(moment):
    """``yyyyMMddHHmmss`` in Vietnam time, as VNPay's dates are written."""
    return to_vn(moment).strftime("%Y%m%d%H%M%S")


def parse_vn_timestamp(text):
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=VN_TZ)


def form_encode(text):
    """Percent-encode as an HTML form does (application/x-www-form-urlencoded, UTF-8).

    Only ``A-Z a-z 0-9 * - . _`` stay as they are and a space becomes ``+``;
    Python's ``quote_plus`` differs on ``~`` (kept) and ``*`` (encoded), which
    VNPay's own encoder (Java ``URLEncoder``) treats the other way round.
    """
    return quote_plus(str(text), safe="*").replace("~", "%7E")


def hash_data(params):
    """The string VNPay signs: vnp_* fields but the hash, non-empty, sorted, form-encoded."""
    items = sorted(
        (key, str(value))
        for key, value in params.items()
        if key.startswith("vnp_") and key not in SIGNATURE_FIELDS and value not in (None, "")
    )
    return "&".join(f"{form_encode(key)}={form_encode(value)}" for key, value in items)


def hmac_sha512(secret, text):
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha512).hexdigest()


def sign_params(params, secret):
    return hmac_sha512(secret, hash_data(params))


def verify_params(params, secret):
    given = str(params.get("vnp_SecureHash") or "").lower()
    return bool(given) and same_digest(sign_params(params, secret), given)


def pipe_hash(body, order, secret):
    """HMAC-SHA512 over the ``vnp_`` values of ``order`` joined by ``|`` (querydr and refund)."""
    return hmac_sha512(secret, "|".join(str(body.get(f"vnp_{name}", "") or "") for name in order))


def verify_pipe_hash(body, order, secret):
    given = str(body.get("vnp_SecureHash") or "").lower()
    return bool(given) and same_digest(pipe_hash(body, order, secret), given)


def describe(response_code, transaction_status=None):
    text = f"vnp_ResponseCode={response_code} ({RESPONSE_CODES.get(response_code, 'unknown')})"
    if transaction_status is not None:
        text += f", vnp_TransactionStatus={transaction_status}"
    return text


class VnpayGateway(Gateway):
    name = "vnpay"

    def __init__(self, tmn_code, hash_secret, payment_url, api_url, server_ip="127.0.0.1"):
        self.tmn_code = tmn_code
        self._secret = hash_secret
        self.payment_url = payment_url
        self.api_url = api_url
        self.server_ip = server_ip

    @property
    def configured(self):
        return bool(self.tmn_code and self._secret)

    def create_checkout(self, request):
        self.require_configured()
        params = {
            "vnp_Version": VERSION,
            "vnp_Command": "pay",
            "vnp_TmnCode": self.tmn_code,
            "vnp_Amount": request.amount * 100,
            "vnp_CurrCode": "VND",
            "vnp_TxnRef": request.txn_ref,
            "vnp_OrderInfo": request.order_info,
            "vnp_OrderType": "other",
            "vnp_Locale": request.locale,
            "vnp_ReturnUrl": request.return_url,
            "vnp_IpAddr": request.client_ip,
            "vnp_CreateDate": vn_timestamp(request.created_at),
            "vnp_ExpireDate": vn_timestamp(request.expires_at),
            "vnp_BankCode": request.bank_code,
        }
        query = hash_data(params)
        pay_url = f"{self.payment_url}?{query}&vnp_SecureHash={hmac_sha512(self._secret, query)}"
        return CheckoutResult(pay_url=pay_url, raw={"query": query})

    def parse_notification(self, params):
        if not self.configured or not verify_params(params, self._secret):
            raise InvalidSignature("vnp_SecureHash does not verify")
        missing = [name for name in REQUIRED_IPN_FIELDS if not params.get(name)]
        if missing:
            raise MalformedMessage(f"missing IPN field(s): {', '.join(missing)}")
        if params["vnp_TmnCode"] != self.tmn_code:
            raise ForeignMerchant("vnp_TmnCode is not ours")
        txn_ref = params["vnp_TxnRef"]
        if not DIGITS.fullmatch(params["vnp_Amount"]):
            raise MalformedMessage("vnp_Amount is not a whole number")
        raw_amount = int(params["vnp_Amount"])
        response_code = params["vnp_ResponseCode"]
        transaction_status = params.get("vnp_TransactionStatus") or None
        if response_code == "00" and transaction_status is None:
            # a success is only a success with its transaction status; without it, it is no statement at all
            raise MalformedMessage("vnp_ResponseCode=00 without vnp_TransactionStatus")
        paid_at = None
        if params.get("vnp_PayDate"):
            try:
                paid_at = parse_vn_timestamp(params["vnp_PayDate"])
            except ValueError:
                raise MalformedMessage("bad vnp_PayDate") from None
        succeeded = response_code == "00" and transaction_status == "00"
        return PaymentReport(
            txn_ref=txn_ref,
            outcome=Outcome.succeeded if succeeded else Outcome.failed,
            # not a whole number of VND: kept exact, so it matches no order and is answered 04 (after 01)
            amount=raw_amount // 100 if raw_amount % 100 == 0 else Decimal(raw_amount) / 100,
            gateway_txn_no=params.get("vnp_TransactionNo") or None,
            paid_at=(paid_at or utcnow()) if succeeded else None,
            reason=None if succeeded else describe(response_code, transaction_status),
            raw=dict(params),
        )

    def _api_body(self, command, txn_ref, transaction_date, order_info, now):
        return {
            "vnp_RequestId": secrets.token_hex(16),  # VNPay answers 94 to a repeated id
            "vnp_Version": VERSION,
            "vnp_Command": command,
            "vnp_TmnCode": self.tmn_code,
            "vnp_TxnRef": txn_ref,
            "vnp_OrderInfo": order_info,
            "vnp_TransactionDate": vn_timestamp(transaction_date),
            "vnp_CreateDate": vn_timestamp(now),
            "vnp_IpAddr": self.server_ip,
        }

    def query(self, request):
        self.require_configured()
        body = self._api_body("querydr", request.txn_ref, request.created_at, f"Truy van giao dich {request.txn_ref}",
                              utcnow())
        body["vnp_SecureHash"] = pipe_hash(body, QUERY_HASH_ORDER, self._secret)
        answer = self._post_json(self.api_url, body)
        if not verify_pipe_hash(answer, QUERY_ANSWER_HASH_ORDER, self._secret):
            raise GatewayUnavailable("vnpay querydr answer has a bad signature")
        code = str(answer.get("vnp_ResponseCode"))
        if code == "91":
            return PaymentReport(request.txn_ref, Outcome.pending, reason="91: transaction not found", raw=answer)
        if code != "00":
            raise GatewayUnavailable(f"vnpay querydr answered {code}: {answer.get('vnp_Message')}")
        status = str(answer.get("vnp_TransactionStatus"))
        try:
            amount = int(answer["vnp_Amount"]) // 100
        except (KeyError, TypeError, ValueError):
            raise GatewayUnavailable("vnpay querydr answer without a valid vnp_Amount") from None
        if status in PENDING_TRANSACTION_STATUSES:
            outcome = Outcome.pending
        else:
            outcome = Outcome.succeeded if status == "00" else Outcome.failed
        paid_at = None
        if outcome is Outcome.succeeded:
            try:
                paid_at = parse_vn_timestamp(str(answer.get("vnp_PayDate")))
            except ValueError:
                paid_at = utcnow()
        return PaymentReport(
            txn_ref=request.txn_ref,
            outcome=outcome,
            amount=amount,
            gateway_txn_no=str(answer.get("vnp_TransactionNo") or "") or None,
            paid_at=paid_at,
            reason=None if outcome is Outcome.succeeded else f"vnp_TransactionStatus={status}",
            raw=answer,
        )

    def refund(self, request):
        self.require_configured()
        body = self._api_body("refund", request.txn_ref, request.created_at,
                              f"Hoan tien giao dich {request.txn_ref}", utcnow())
        body.update({
            "vnp_TransactionType": "02",
            "vnp_Amount": request.amount * 100,
            "vnp_TransactionNo": request.gateway_txn_no or "",
            "vnp_CreateBy": "payment-service",
        })
        body["vnp_SecureHash"] = pipe_hash(body, REFUND_HASH_ORDER, self._secret)
        answer = self._post_json(self.api_url, body)
        if not verify_pipe_hash(answer, REFUND_ANSWER_HASH_ORDER, self._secret):
            raise GatewayUnavailable("vnpay refund answer has a bad signature")
        code = str(answer.get("vnp_ResponseCode"))
        if code == "00":
            return RefundResult(True, raw=answer)
        return RefundResult(False, reason=f"vnp_ResponseCode={code}: {answer.get('vnp_Message')}", raw=answer)
