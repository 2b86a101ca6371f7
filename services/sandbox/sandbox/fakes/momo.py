"""A fake MoMo e-wallet, API v2: create, query, refund, and signed IPNs.

Written from the protocol (docs/protocols.md, "MoMo"), not from the payment
service's adapter; tests/sandbox checks the signatures against hand-computed
vectors.
"""
import hashlib
import hmac
import secrets
import time

from werkzeug.wrappers import Response

from sandbox.fakes.server import FakeServer, json_response

CREATE_PATH = "/v2/gateway/api/create"
QUERY_PATH = "/v2/gateway/api/query"
REFUND_PATH = "/v2/gateway/api/refund"

# The raw signature strings' keys, in the protocol's (alphabetical) order.
CREATE_SIGNED = "accessKey amount extraData ipnUrl orderId orderInfo partnerCode redirectUrl requestId requestType"
IPN_SIGNED = ("accessKey amount extraData message orderId orderInfo orderType partnerCode payType requestId "
              "responseTime resultCode transId")
QUERY_SIGNED = "accessKey orderId partnerCode requestId"
REFUND_SIGNED = "accessKey amount description orderId partnerCode requestId transId"

MIN_AMOUNT, MAX_AMOUNT = 1_000, 50_000_000  # wallet payments, VND
PAID, NOT_FOUND, IN_PROGRESS = 0, 42, 1000
BAD_SIGNATURE, BAD_AMOUNT, REFUND_REFUSED = 11, 22, 1080


def raw_signature(values, keys):
    """``key=value&...`` over the space-separated ``keys``, raw values (not URL-encoded); None is empty."""
    return "&".join(f"{key}={'' if values.get(key) is None else values[key]}" for key in keys.split())


def hmac_sha256(secret, text):
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def _millis_now():
    return int(time.time() * 1000)


class FakeMomo(FakeServer):
    """MoMo v2: checks every request's signature, keeps the orders, builds signed IPNs."""

    def __init__(self, partner_code="MOMOFAKE01", access_key="FAKEACCESSKEY", secret_key="FAKEMOMOSECRET0123456789",
                 **server):
        super().__init__(**server)
        self.partner_code = partner_code
        self.access_key = access_key
        self.secret_key = secret_key
        self.orders = {}
        self.create_requests = []
        self.refunds = []
        self.refuse_refunds = None

    @property
    def api_base(self):
        return self.base_url

    def sign(self, values, keys):
        """The signature over ``keys`` (a ``*_SIGNED`` string); ``accessKey`` is the merchant's, not the body's."""
        return hmac_sha256(self.secret_key, raw_signature({**values, "accessKey": self.access_key}, keys))

    def _verified(self, body, keys):
        given = str(body.get("signature") or "")
        return (body.get("partnerCode") == self.partner_code and given.isascii()
                and hmac.compare_digest(self.sign(body, keys), given))

    def app(self, request):
        if request.method != "POST":
            return Response("not found", status=404)
        body = request.get_json(silent=True) or {}
        handler = {CREATE_PATH: self._create, QUERY_PATH: self._query, REFUND_PATH: self._refund}.get(request.path)
        return handler(body) if handler else Response("not found", status=404)

    def _answer(self, body, result_code, message, **extra):
        return json_response({"partnerCode": self.partner_code, "orderId": body.get("orderId"),
                              "requestId": body.get("requestId"), "resultCode": result_code, "message": message,
                              "responseTime": _millis_now(), **extra})

    def _create(self, body):
        self.create_requests.append(body)
        if not self._verified(body, CREATE_SIGNED):
            return self._answer(body, BAD_SIGNATURE, "Access denied: bad signature")
        amount = int(body.get("amount") or 0)
        if not MIN_AMOUNT <= amount <= MAX_AMOUNT:
            return self._answer(body, BAD_AMOUNT, "Invalid amount")
        with self.lock:
            self.orders.setdefault(body["orderId"], {"request": body, "amount": amount, "paid": None})
        pay_url = f"{self.base_url}/pay?orderId={body['orderId']}"
        return self._answer(body, PAID, "Thành công.", amount=amount, payUrl=pay_url, deeplink=pay_url,
                            qrCodeUrl=pay_url)

    def pay(self, order_id, result_code=PAID, message=None, amount=None):
        """The citizen pays (or fails to): record it and return the signed IPN body."""
        order = self.orders[order_id]
        trans_id = secrets.randbelow(10**10) + 10**9
        with self.lock:
            order["paid"] = {"resultCode": result_code, "transId": trans_id}
        request = order["request"]
        body = {
            "partnerCode": self.partner_code, "orderId": order_id, "requestId": request["requestId"],
            "amount": order["amount"] if amount is None else amount, "orderInfo": request["orderInfo"],
            "orderType": "momo_wallet", "transId": trans_id, "resultCode": result_code,
            "message": message or ("Thành công." if result_code == PAID else "Giao dịch thất bại."),
            "payType": "qr", "responseTime": _millis_now(), "extraData": request["extraData"],
        }
        body["signature"] = self.sign(body, IPN_SIGNED)
        return body

    def _query(self, body):
        if not self._verified(body, QUERY_SIGNED):
            return self._answer(body, BAD_SIGNATURE, "Access denied: bad signature")
        order = self.orders.get(body.get("orderId"))
        if order is None:
            return self._answer(body, NOT_FOUND, "Order not found")
        if order["paid"] is None:
            return self._answer(body, IN_PROGRESS, "Transaction initiated, waiting for the user",
                                amount=order["amount"])
        return self._answer(body, order["paid"]["resultCode"], "Query result", amount=order["amount"],
                            transId=order["paid"]["transId"])

    def _refund(self, body):
        if not self._verified(body, REFUND_SIGNED):
            return self._answer(body, BAD_SIGNATURE, "Access denied: bad signature")
        if self.refuse_refunds:
            return self._answer(body, REFUND_REFUSED, self.refuse_refunds)
        paid = [o for o in self.orders.values() if o["paid"] and o["paid"]["transId"] == body.get("transId")]
        if not paid or paid[0]["paid"]["resultCode"] != PAID or int(body.get("amount") or 0) != paid[0]["amount"]:
            return self._answer(body, REFUND_REFUSED, "Refund rejected: unknown transaction or amount")
        self.refunds.append(body)
        return self._answer(body, PAID, "Thành công.", amount=body["amount"], transId=body["transId"])
