"""VNPay and MoMo in the sandbox: the fakes (``sandbox.fakes.vnpay``, ``sandbox.fakes.momo``) do the
wire format (signatures, querydr, refund, create, query); this module adds what a citizen and a merchant
see of a real gateway: a pay page with "Thanh toán" / "Hủy", the signed IPN sent to the merchant
(retried like the gateways do) and the redirect back to the merchant's return URL.
"""
from datetime import datetime
from urllib.parse import urlencode

from werkzeug.utils import redirect
from werkzeug.wrappers import Response

from sandbox import pages
from sandbox.callbacks import deliver
from sandbox.fakes.momo import FakeMomo
from sandbox.fakes.vnpay import FakeVnpay
from sandbox.store import VN_TZ, now_vn

VNPAY_IPN_ANSWERED = {"00", "01", "02", "04", "97"}  # VNPay retries only on 99 or no valid answer
MOMO_USER_DENIED = 1006


def _html(text, status=200):
    return Response(text, status=status, mimetype="text/html")


def _with_query(url, params):
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


class SandboxVnpay(FakeVnpay):
    """The fake served inside the sandbox's own HTTP server (never ``start()``ed on a port of its own)."""

    def __init__(self, settings, store):
        super().__init__(tmn_code=settings.vnpay_tmn_code, hash_secret=settings.vnpay_hash_secret)
        self.settings, self.store = settings, store
        self.base_url = settings.public_url
        self.pay_path = settings.vnpay_payment_path
        self.api_path = settings.vnpay_api_path

    @property
    def ipn_url(self):
        return self.settings.payment_callback_base_url + "/callbacks/vnpay/ipn"

    def pay_page(self, request):
        params = request.args.to_dict()
        expired = _expired(params.get("vnp_ExpireDate"))
        if expired:
            return _html(pages.error_page("VNPAY", expired), 400)
        verdict = self.visit(request.url)  # verifies the signature and records the order for querydr
        if verdict.status_code != 200:
            return _html(pages.error_page("VNPAY", verdict.get_data(as_text=True)), verdict.status_code)
        txn_ref = params["vnp_TxnRef"]
        order = self.orders[txn_ref]
        if order["paid"] is not None:
            return _html(pages.error_page("VNPAY", "Giao dịch đã được xử lý."), 409)
        rows = [("Đơn vị", params["vnp_TmnCode"]), ("Mã giao dịch", txn_ref), ("Nội dung", order["order_info"]),
                ("Ngân hàng", params.get("vnp_BankCode") or "NCB")]
        return _html(pages.pay_page("VNPAY", f"/vnpay/checkout/{txn_ref}", order["amount"] // 100, rows))

    def checkout(self, request, txn_ref):
        """The citizen pressed a button: IPN to the merchant, then the browser back to vnp_ReturnUrl."""
        paid = request.values.get("action", "pay") == "pay"
        with self.lock:
            order = self.orders.get(txn_ref)
            if order is None or order["paid"] is not None:
                return _html(pages.error_page("VNPAY", "Phiên thanh toán không tồn tại hoặc đã kết thúc."), 409)
        result = self.pay(txn_ref, response_code="00" if paid else "24", transaction_status="00" if paid else "02")
        deliver(self.store, "vnpay_ipn", "GET", self.ipn_url, result, accepted=self._ipn_answered,
                attempts=self.settings.ipn_attempts, retry_seconds=self.settings.ipn_retry_seconds)
        return redirect(_with_query(order["params"]["vnp_ReturnUrl"], result), code=302)

    @staticmethod
    def _ipn_answered(response):
        try:
            return response.status_code == 200 and response.json().get("RspCode") in VNPAY_IPN_ANSWERED
        except ValueError:
            return False

    def state(self):
        with self.lock:
            orders = [{"txn_ref": txn_ref, "amount": order["amount"] // 100, "paid": order["paid"]}
                      for txn_ref, order in self.orders.items()]
            refunds = [{"gateway": "vnpay", "txn_ref": body["vnp_TxnRef"], "amount": int(body["vnp_Amount"]) // 100,
                        "type": body.get("vnp_TransactionType"), "by": body.get("vnp_CreateBy")}
                       for body in self.refunds]
        return orders, refunds


class SandboxMomo(FakeMomo):
    """The MoMo fake behind the sandbox's HTTP server; its payUrl points at the sandbox's pay page."""

    def __init__(self, settings, store):
        super().__init__(partner_code=settings.momo_partner_code, access_key=settings.momo_access_key,
                         secret_key=settings.momo_secret_key)
        self.settings, self.store = settings, store
        self.base_url = settings.public_url + "/momo"  # payUrl = <public>/momo/pay?orderId=...

    def pay_page(self, request):
        order_id = request.args.get("orderId", "")
        order = self.orders.get(order_id)
        if order is None:
            return _html(pages.error_page("MoMo", "Không tìm thấy giao dịch."), 404)
        if order["paid"] is not None:
            return _html(pages.error_page("MoMo", "Giao dịch đã được xử lý."), 409)
        rows = [("Mã đơn hàng", order_id), ("Nội dung", order["request"]["orderInfo"])]
        return _html(pages.pay_page("MoMo", f"/momo/pay/{order_id}", order["amount"], rows))

    def checkout(self, request, order_id):
        paid = request.values.get("action", "pay") == "pay"
        with self.lock:
            order = self.orders.get(order_id)
            if order is None or order["paid"] is not None:
                return _html(pages.error_page("MoMo", "Phiên thanh toán không tồn tại hoặc đã kết thúc."), 409)
        result = self.pay(order_id, result_code=0 if paid else MOMO_USER_DENIED,
                          message=None if paid else "Giao dịch bị từ chối bởi người dùng.")
        deliver(self.store, "momo_ipn", "POST", order["request"]["ipnUrl"], result, as_json=True,
                accepted=lambda response: response.status_code == 204,
                attempts=self.settings.ipn_attempts, retry_seconds=self.settings.ipn_retry_seconds)
        return redirect(_with_query(order["request"]["redirectUrl"], result), code=302)

    def state(self):
        with self.lock:
            orders = [{"txn_ref": order_id, "amount": order["amount"], "paid": order["paid"]}
                      for order_id, order in self.orders.items()]
            refunds = [{"gateway": "momo", "txn_ref": self._paid_order(body.get("transId")),
                        "amount": body.get("amount"), "refund_order_id": body.get("orderId"),
                        "description": body.get("description")} for body in self.refunds]
        return orders, refunds

    def _paid_order(self, trans_id):
        return next((order_id for order_id, order in self.orders.items()
                     if order["paid"] and order["paid"]["transId"] == trans_id), None)


def _expired(expire_date):
    """VNPay refuses a pay URL past its vnp_ExpireDate (the fake does not look at it)."""
    if not expire_date:
        return None
    try:
        if datetime.strptime(expire_date, "%Y%m%d%H%M%S").replace(tzinfo=VN_TZ) < now_vn():
            return "Giao dịch đã quá thời gian chờ thanh toán."
    except ValueError:
        return "vnp_ExpireDate không hợp lệ."
    return None
