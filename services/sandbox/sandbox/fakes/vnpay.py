"""A fake VNPay 2.1.0: pay page, signed IPNs, querydr and refund.

Written from the protocol (docs/protocols.md, "VNPay"), not from the payment
service's adapter, so that a signing bug on one side is not mirrored on the
other; tests/sandbox checks these functions against hand-computed vectors.
"""
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

from werkzeug.wrappers import Response

from sandbox.fakes.server import FakeServer, json_response

VN_TZ = timezone(timedelta(hours=7), "ICT")
PAY_PATH = "/paymentv2/vpcpay.html"
API_PATH = "/merchant_webapi/api/transaction"

# The pipe-joined hash orders, as the protocol lists them.
QUERY_ORDER = "RequestId|Version|Command|TmnCode|TxnRef|TransactionDate|CreateDate|IpAddr|OrderInfo".split("|")
QUERY_ANSWER_ORDER = ("ResponseId|Command|ResponseCode|Message|TmnCode|TxnRef|Amount|BankCode|PayDate|"
                      "TransactionNo|TransactionType|TransactionStatus|OrderInfo|PromotionCode|PromotionAmount"
                      ).split("|")
REFUND_ORDER = ("RequestId|Version|Command|TmnCode|TransactionType|TxnRef|Amount|TransactionNo|TransactionDate|"
                "CreateBy|CreateDate|IpAddr|OrderInfo").split("|")
REFUND_ANSWER_ORDER = ("ResponseId|Command|ResponseCode|Message|TmnCode|TxnRef|Amount|BankCode|PayDate|"
                       "TransactionNo|TransactionType|TransactionStatus|OrderInfo").split("|")

# application/x-www-form-urlencoded keeps only these bytes; a space is "+", every other byte "%XX".
_FORM_KEPT = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-._")


def form_encode(text):
    """Percent-encode UTF-8 text as an HTML form does."""
    return "".join(chr(byte) if byte in _FORM_KEPT else "+" if byte == 0x20 else f"%{byte:02X}"
                   for byte in str(text).encode("utf-8"))


def signed_text(params):
    """What ``vnp_SecureHash`` covers: the non-empty ``vnp_*`` fields but the hash's own, sorted, form-encoded."""
    fields = sorted((key, str(value)) for key, value in params.items()
                    if key.startswith("vnp_") and key not in ("vnp_SecureHash", "vnp_SecureHashType")
                    and value not in (None, ""))
    return "&".join(f"{form_encode(key)}={form_encode(value)}" for key, value in fields)


def hmac_sha512(secret, text):
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha512).hexdigest()


def sign(params, secret):
    return hmac_sha512(secret, signed_text(params))


def pipe_sign(body, order, secret):
    """HMAC-SHA512 over the ``vnp_<name>`` values of ``order`` joined by ``|`` (querydr, refund, their answers)."""
    return hmac_sha512(secret, "|".join(str(body.get(f"vnp_{name}") or "") for name in order))


def _matches(expected, given):
    given = str(given or "").lower()
    return bool(given) and given.isascii() and hmac.compare_digest(expected, given)


def verify(params, secret):
    return _matches(sign(params, secret), params.get("vnp_SecureHash"))


def verify_pipe(body, order, secret):
    return _matches(pipe_sign(body, order, secret), body.get("vnp_SecureHash"))


def vn_timestamp(moment):
    """``yyyyMMddHHmmss`` in Vietnam time; a naive moment is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(VN_TZ).strftime("%Y%m%d%H%M%S")


class FakeVnpay(FakeServer):
    """VNPay 2.1.0: the pay page checks the signed URL, querydr and refund answer signed as VNPay does."""

    pay_path = PAY_PATH
    api_path = API_PATH

    def __init__(self, tmn_code="FAKETMN1", hash_secret="FAKEVNPAYSECRET0123456789ABCDEF", **server):
        super().__init__(**server)
        self.tmn_code = tmn_code
        self.hash_secret = hash_secret
        self.orders = {}  # txn_ref → order dict
        self.api_requests = []
        self.refunds = []
        self.refuse_refunds = None  # a message: refunds answered with an error while set
        self._request_ids = set()

    @property
    def payment_url(self):
        return self.base_url + self.pay_path

    @property
    def api_url(self):
        return self.base_url + self.api_path

    def app(self, request):
        if request.method == "GET" and request.path == self.pay_path:
            return self._pay_page(request.args.to_dict())
        if request.method == "POST" and request.path == self.api_path:
            return self._api(request.get_json(silent=True) or {})
        return Response("not found", status=404)

    def _pay_page(self, params):
        if not verify(params, self.hash_secret) or params.get("vnp_TmnCode") != self.tmn_code:
            return Response("Sai chữ ký (invalid signature)", status=400)
        with self.lock:
            self.orders.setdefault(params["vnp_TxnRef"], {
                "amount": int(params["vnp_Amount"]), "create_date": params["vnp_CreateDate"], "params": params,
                "order_info": params.get("vnp_OrderInfo", ""), "paid": None,
            })
        return Response("<html>VNPay sandbox (fake)</html>", mimetype="text/html")

    def visit(self, pay_url):
        """What the citizen's browser does: open the pay URL (the order becomes known to querydr)."""
        return self._pay_page(dict(parse_qsl(urlsplit(pay_url).query, keep_blank_values=True)))

    def pay(self, txn_ref, response_code="00", transaction_status="00", amount=None, transaction_no=None):
        """The citizen pays (or fails to): record the outcome and return the signed IPN parameters."""
        with self.lock:
            self.orders[txn_ref]["paid"] = {
                "response_code": response_code, "transaction_status": transaction_status,
                "transaction_no": transaction_no or str(secrets.randbelow(10**8) + 10**7),
                "pay_date": vn_timestamp(datetime.now(timezone.utc)), "bank_code": "NCB",
            }
        return self.ipn_params(txn_ref, amount=amount)

    def settled(self, txn_ref, amount, created_at, order_info="", transaction_no=None):
        """An order VNPay knows as paid (the citizen paid; no IPN reached us): what querydr then reports."""
        with self.lock:
            self.orders[txn_ref] = {
                "amount": int(amount) * 100, "create_date": vn_timestamp(created_at), "params": {},
                "order_info": order_info, "paid": None,
            }
        self.pay(txn_ref, transaction_no=transaction_no)

    def ipn_params(self, txn_ref, amount=None, **overrides):
        order = self.orders[txn_ref]
        paid = order["paid"]
        params = {
            "vnp_TmnCode": self.tmn_code,
            "vnp_Amount": str(order["amount"] if amount is None else amount * 100),
            "vnp_BankCode": paid["bank_code"],
            "vnp_BankTranNo": "VNP" + paid["transaction_no"],
            "vnp_CardType": "ATM",
            "vnp_OrderInfo": order["order_info"],
            "vnp_PayDate": paid["pay_date"],
            "vnp_ResponseCode": paid["response_code"],
            "vnp_TransactionNo": paid["transaction_no"],
            "vnp_TransactionStatus": paid["transaction_status"],
            "vnp_TxnRef": txn_ref,
            "vnp_SecureHashType": "HmacSHA512",
            **overrides,
        }
        params["vnp_SecureHash"] = sign(params, self.hash_secret)
        return params

    def _api(self, body):
        self.api_requests.append(body)
        command = body.get("vnp_Command")
        querydr = command == "querydr"
        answer_order = QUERY_ANSWER_ORDER if querydr else REFUND_ANSWER_ORDER
        answer = {"vnp_ResponseId": secrets.token_hex(16), "vnp_Command": command, "vnp_TmnCode": self.tmn_code,
                  "vnp_TxnRef": body.get("vnp_TxnRef", "")}

        def signed(code, message, **fields):
            document = {**answer, **fields, "vnp_ResponseCode": code, "vnp_Message": message}
            document["vnp_SecureHash"] = pipe_sign(document, answer_order, self.hash_secret)
            return json_response(document)

        if command not in ("querydr", "refund") or not verify_pipe(
                body, QUERY_ORDER if querydr else REFUND_ORDER, self.hash_secret):
            return signed("97", "Invalid checksum")
        with self.lock:
            if body["vnp_RequestId"] in self._request_ids:
                return signed("94", "Duplicate request")
            self._request_ids.add(body["vnp_RequestId"])
            stored = self.orders.get(body["vnp_TxnRef"])
        if stored is None or stored["create_date"] != body.get("vnp_TransactionDate"):
            return signed("91", "Transaction not found")
        paid = stored["paid"] or {}
        answer.update({
            "vnp_Amount": str(stored["amount"]), "vnp_OrderInfo": stored["order_info"],
            "vnp_BankCode": paid.get("bank_code", ""), "vnp_PayDate": paid.get("pay_date", ""),
            "vnp_TransactionNo": paid.get("transaction_no", ""),
            "vnp_TransactionType": "01", "vnp_TransactionStatus": paid.get("transaction_status", "01"),
        })
        if querydr:
            return signed("00", "Query success")
        if self.refuse_refunds:
            return signed("02", self.refuse_refunds)
        if paid.get("transaction_status") != "00" or body.get("vnp_TransactionNo") != paid["transaction_no"]:
            return signed("91", "Transaction not found")
        if body.get("vnp_TransactionType") != "02" or str(body.get("vnp_Amount")) != str(stored["amount"]):
            return signed("03", "Invalid amount")
        self.refunds.append(body)
        return signed("00", "Refund success", vnp_TransactionType="02")
