"""Fake VNPay and MoMo servers speaking the real wire formats, for tests and a local sandbox.

Each fake is a small WSGI app served on 127.0.0.1 in a green thread. It checks
every signature as the provider would, keeps the orders it has seen, and
builds signed IPNs for the test (or the sandbox) to deliver.
"""
import json
import secrets
import threading
from urllib.parse import parse_qsl, urlsplit

import eventlet
import eventlet.wsgi
from werkzeug.wrappers import Request, Response

from payment.gateways import momo, vnpay
from portal_shared.timeutil import utcnow


class FakeServer:
    """Serves ``self.app`` on 127.0.0.1 at a free port."""

    def __init__(self):
        self._thread = None
        self.base_url = None
        self.lock = threading.Lock()

    def start(self):
        sock = eventlet.listen(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._thread = eventlet.spawn(eventlet.wsgi.server, sock, self._wsgi, log_output=False, log=_Quiet())
        return self

    def stop(self):
        if self._thread is not None:
            self._thread.kill()
            self._thread = None

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        try:
            response = self.app(request)
        except Exception as exc:  # a fake must explain itself, not hang up
            response = Response(f"fake error: {exc!r}", status=500)
        return response(environ, start_response)

    @staticmethod
    def json(payload, status=200):
        return Response(json.dumps(payload), status=status, mimetype="application/json")


class _Quiet:
    def write(self, *args):
        pass


class FakeVnpay(FakeServer):
    """VNPay 2.1.0: pay page, querydr and refund."""

    pay_path = "/paymentv2/vpcpay.html"
    api_path = "/merchant_webapi/api/transaction"

    def __init__(self, tmn_code="FAKETMN1", hash_secret="FAKEVNPAYSECRET0123456789ABCDEF"):
        super().__init__()
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
        if not vnpay.verify_params(params, self.hash_secret) or params.get("vnp_TmnCode") != self.tmn_code:
            return Response("Sai chữ ký (invalid signature)", status=400)
        with self.lock:
            self.orders.setdefault(params["vnp_TxnRef"], {
                "amount": int(params["vnp_Amount"]), "create_date": params["vnp_CreateDate"], "params": params,
                "order_info": params.get("vnp_OrderInfo", ""), "paid": None,
            })
        return Response("<html>VNPay sandbox (fake)</html>", mimetype="text/html")

    def visit(self, pay_url):
        """What the citizen's browser does: open the pay URL (the order becomes known to querydr)."""
        parts = urlsplit(pay_url)
        return self._pay_page(dict(parse_qsl(parts.query, keep_blank_values=True)))

    def pay(self, txn_ref, response_code="00", transaction_status="00", amount=None, transaction_no=None):
        """The citizen pays (or fails to): record the outcome and return the signed IPN parameters."""
        with self.lock:
            order = self.orders[txn_ref]
            order["paid"] = {
                "response_code": response_code, "transaction_status": transaction_status,
                "transaction_no": transaction_no or str(secrets.randbelow(10**8) + 10**7),
                "pay_date": vnpay.vn_timestamp(utcnow()), "bank_code": "NCB",
            }
        return self.ipn_params(txn_ref, amount=amount)

    def settled(self, txn_ref, amount, created_at, order_info="", transaction_no=None):
        """An order VNPay knows as paid (the citizen paid; no IPN reached us): what querydr then reports."""
        with self.lock:
            self.orders[txn_ref] = {
                "amount": int(amount) * 100, "create_date": vnpay.vn_timestamp(created_at), "params": {},
                "order_info": order_info, "paid": None,
            }
        self.pay(txn_ref, transaction_no=transaction_no)

    def ipn_params(self, txn_ref, amount=None, **overrides):
        order, paid = self.orders[txn_ref], self.orders[txn_ref]["paid"]
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
        params["vnp_SecureHash"] = vnpay.sign_params(params, self.hash_secret)
        return params

    def _signed(self, body, order):
        body["vnp_SecureHash"] = vnpay.pipe_hash(body, order, self.hash_secret)
        return self.json(body)

    def _api(self, body):
        self.api_requests.append(body)
        command = body.get("vnp_Command")
        order = vnpay.QUERY_HASH_ORDER if command == "querydr" else vnpay.REFUND_HASH_ORDER
        answer = {"vnp_ResponseId": secrets.token_hex(16), "vnp_Command": command, "vnp_TmnCode": self.tmn_code,
                  "vnp_TxnRef": body.get("vnp_TxnRef", "")}
        answer_order = vnpay.QUERY_ANSWER_HASH_ORDER if command == "querydr" else vnpay.REFUND_ANSWER_HASH_ORDER
        if command not in ("querydr", "refund") or not vnpay.verify_pipe_hash(body, order, self.hash_secret):
            return self._signed({**answer, "vnp_ResponseCode": "97", "vnp_Message": "Invalid checksum"}, answer_order)
        with self.lock:
            if body["vnp_RequestId"] in self._request_ids:
                return self._signed({**answer, "vnp_ResponseCode": "94", "vnp_Message": "Duplicate request"},
                                    answer_order)
            self._request_ids.add(body["vnp_RequestId"])
            stored = self.orders.get(body["vnp_TxnRef"])
        if stored is None or stored["create_date"] != body.get("vnp_TransactionDate"):
            return self._signed({**answer, "vnp_ResponseCode": "91", "vnp_Message": "Transaction not found"},
                                answer_order)
        paid = stored["paid"]
        answer.update({
            "vnp_Amount": str(stored["amount"]), "vnp_OrderInfo": stored["order_info"],
            "vnp_BankCode": paid["bank_code"] if paid else "", "vnp_PayDate": paid["pay_date"] if paid else "",
            "vnp_TransactionNo": paid["transaction_no"] if paid else "",
            "vnp_TransactionType": "01", "vnp_TransactionStatus": paid["transaction_status"] if paid else "01",
        })
        if command == "querydr":
            return self._signed({**answer, "vnp_ResponseCode": "00", "vnp_Message": "Query success"}, answer_order)
        if self.refuse_refunds:
            return self._signed({**answer, "vnp_ResponseCode": "02", "vnp_Message": self.refuse_refunds},
                                answer_order)
        if not paid or paid["transaction_status"] != "00" or body.get("vnp_TransactionNo") != paid["transaction_no"]:
            return self._signed({**answer, "vnp_ResponseCode": "91", "vnp_Message": "Transaction not found"},
                                answer_order)
        if body.get("vnp_TransactionType") != "02" or str(body.get("vnp_Amount")) != str(stored["amount"]):
            return self._signed({**answer, "vnp_ResponseCode": "03", "vnp_Message": "Invalid amount"}, answer_order)
        self.refunds.append(body)
        answer["vnp_TransactionType"] = "02"
        return self._signed({**answer, "vnp_ResponseCode": "00", "vnp_Message": "Refund success"}, answer_order)


class FakeMomo(FakeServer):
    """MoMo v2: create, query, refund."""

    def __init__(self, partner_code="MOMOFAKE01", access_key="FAKEACCESSKEY", secret_key="FAKEMOMOSECRET0123456789"):
        super().__init__()
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

    def sign(self, values, names):
        return momo.hmac_sha256(self.secret_key, momo.raw_signature({**values, "accessKey": self.access_key}, names))

    def _verified(self, body, names):
        given = str(body.get("signature") or "")
        return body.get("partnerCode") == self.partner_code and secrets.compare_digest(self.sign(body, names), given)

    def app(self, request):
        body = request.get_json(silent=True) or {}
        if request.method != "POST":
            return Response("not found", status=404)
        if request.path == momo.CREATE_PATH:
            return self._create(body)
        if request.path == momo.QUERY_PATH:
            return self._query(body)
        if request.path == momo.REFUND_PATH:
            return self._refund(body)
        return Response("not found", status=404)

    def _answer(self, body, result_code, message, **extra):
        return self.json({"partnerCode": self.partner_code, "orderId": body.get("orderId"),
                          "requestId": body.get("requestId"), "resultCode": result_code, "message": message,
                          "responseTime": int(utcnow().timestamp() * 1000), **extra})

    def _create(self, body):
        self.create_requests.append(body)
        if not self._verified(body, momo.CREATE_FIELDS):
            return self._answer(body, 11, "Access denied: bad signature")
        amount = int(body.get("amount") or 0)
        if not momo.MIN_AMOUNT <= amount <= momo.MAX_AMOUNT:
            return self._answer(body, 22, "Invalid amount")
        with self.lock:
            self.orders.setdefault(body["orderId"], {"request": body, "amount": amount, "paid": None})
        pay_url = f"{self.base_url}/pay?orderId={body['orderId']}"
        return self._answer(body, 0, "Thành công.", amount=amount, payUrl=pay_url, deeplink=pay_url,
                            qrCodeUrl=pay_url)

    def pay(self, order_id, result_code=0, message=None, amount=None):
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
            "message": message or ("Thành công." if result_code == 0 else "Giao dịch thất bại."),
            "payType": "qr", "responseTime": int(utcnow().timestamp() * 1000), "extraData": request["extraData"],
        }
        body["signature"] = self.sign(body, momo.IPN_FIELDS)
        return body

    def _query(self, body):
        if not self._verified(body, momo.QUERY_FIELDS):
            return self._answer(body, 11, "Access denied: bad signature")
        order = self.orders.get(body.get("orderId"))
        if order is None:
            return self._answer(body, 42, "Order not found")
        if order["paid"] is None:
            return self._answer(body, 1000, "Transaction initiated, waiting for the user", amount=order["amount"])
        return self._answer(body, order["paid"]["resultCode"], "Query result", amount=order["amount"],
                            transId=order["paid"]["transId"])

    def _refund(self, body):
        if not self._verified(body, momo.REFUND_FIELDS):
            return self._answer(body, 11, "Access denied: bad signature")
        if self.refuse_refunds:
            return self._answer(body, 1080, self.refuse_refunds)
        paid = [o for o in self.orders.values() if o["paid"] and o["paid"]["transId"] == body.get("transId")]
        if not paid or paid[0]["paid"]["resultCode"] != 0 or int(body.get("amount") or 0) != paid[0]["amount"]:
            return self._answer(body, 1080, "Refund rejected: unknown transaction or amount")
        self.refunds.append(body)
        return self._answer(body, 0, "Thành công.", amount=body["amount"], transId=body["transId"])
