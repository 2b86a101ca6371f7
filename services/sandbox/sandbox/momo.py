"""Fake MoMo API v2: create / query / refund, a pay page, signed IPN POST and redirect (see shared/PROTOCOLS.md)."""
import hashlib
import hmac
import json
import secrets
import time
import uuid
from urllib.parse import urlencode

from werkzeug.utils import redirect
from werkzeug.wrappers import Response

from sandbox import pages
from sandbox.callbacks import deliver
from sandbox.store import now_vn

CREATE_FIELDS = ("accessKey", "amount", "extraData", "ipnUrl", "orderId", "orderInfo", "partnerCode", "redirectUrl",
                 "requestId", "requestType")
IPN_FIELDS = ("accessKey", "amount", "extraData", "message", "orderId", "orderInfo", "orderType", "partnerCode",
              "payType", "requestId", "responseTime", "resultCode", "transId")
QUERY_FIELDS = ("accessKey", "orderId", "partnerCode", "requestId")
REFUND_FIELDS = ("accessKey", "amount", "description", "orderId", "partnerCode", "requestId", "transId")
REQUEST_TYPES = {"captureWallet", "payWithATM", "payWithCC", "payWithMethod"}
MIN_AMOUNT, MAX_AMOUNT = 1_000, 50_000_000
PAID, CREATED, USER_DENIED = 0, 1000, 1006
MESSAGES = {PAID: "Thành công.", CREATED: "Giao dịch đã được khởi tạo, chờ người dùng xác nhận thanh toán.",
            USER_DENIED: "Giao dịch bị từ chối bởi người dùng.", 13: "Xác thực doanh nghiệp thất bại.",
            20: "Yêu cầu sai định dạng.", 22: "Số tiền giao dịch không hợp lệ.", 41: "Trùng orderId.",
            42: "OrderId không tồn tại hoặc giao dịch chưa thanh toán."}


def millis():
    return int(time.time() * 1000)


def raw_signature(values, names):
    return "&".join(f"{name}={'' if values.get(name) is None else values.get(name)}" for name in names)


class FakeMomo:
    def __init__(self, settings, store):
        self.settings = settings
        self.store = store
        self._trans_ids = iter(range(4100000000001, 10**14))

    def sign(self, values, names):
        text = raw_signature({**values, "accessKey": self.settings.momo_access_key}, names)
        return hmac.new(self.settings.momo_secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()

    def _verified(self, body, names):
        given = str(body.get("signature") or "").lower()
        return (body.get("partnerCode") == self.settings.momo_partner_code and bool(given)
                and hmac.compare_digest(self.sign(body, names), given))

    @staticmethod
    def _json(answer, status=200):
        return Response(json.dumps(answer, ensure_ascii=False), status=status, mimetype="application/json")

    def _result(self, body, code, **extra):
        return self._json({"partnerCode": body.get("partnerCode"), "orderId": body.get("orderId"),
                           "requestId": body.get("requestId"), "resultCode": code,
                           "message": MESSAGES.get(code, "Lỗi."), "responseTime": millis(), **extra})

    @staticmethod
    def _body(request):
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    # --- merchant API ---

    def create(self, request):
        body = self._body(request)
        if body is None:
            return self._json({"resultCode": 20, "message": MESSAGES[20]}, 400)
        if not self._verified(body, CREATE_FIELDS):
            return self._result(body, 13)
        with self.store.lock:
            previous = self.store.momo_requests.get(body.get("requestId"))
            if previous is not None:
                return self._json(previous)
            missing = [name for name in ("requestId", "orderId", "orderInfo", "redirectUrl", "ipnUrl", "requestType")
                       if not body.get(name)]
            if missing or body.get("requestType") not in REQUEST_TYPES or not isinstance(body.get("amount"), int):
                return self._result(body, 20)
            if not MIN_AMOUNT <= body["amount"] <= MAX_AMOUNT:
                return self._result(body, 22)
            if body["orderId"] in self.store.momo_orders:
                return self._result(body, 41)
            token = secrets.token_urlsafe(12)
            self.store.momo_orders[body["orderId"]] = {
                "order_id": body["orderId"], "request_id": body["requestId"], "amount": body["amount"],
                "order_info": body["orderInfo"], "redirect_url": body["redirectUrl"], "ipn_url": body["ipnUrl"],
                "extra_data": body.get("extraData") or "", "token": token, "result_code": CREATED,
                "trans_id": None, "pay_type": "", "response_time": None, "created_at": now_vn().isoformat(),
            }
            pay_url = f"{self.settings.public_url}/momo/pay?t={token}"
            answer = {"partnerCode": body["partnerCode"], "orderId": body["orderId"], "requestId": body["requestId"],
                      "amount": body["amount"], "responseTime": millis(), "message": MESSAGES[PAID], "resultCode": 0,
                      "payUrl": pay_url, "deeplink": f"momo://app?action=payWithApp&t={token}",
                      "qrCodeUrl": pay_url}
            self.store.momo_requests[body["requestId"]] = answer
        return self._json(answer)

    def query(self, request):
        body = self._body(request)
        if body is None:
            return self._json({"resultCode": 20, "message": MESSAGES[20]}, 400)
        if not self._verified(body, QUERY_FIELDS):
            return self._result(body, 13)
        with self.store.lock:
            order = self.store.momo_orders.get(body.get("orderId"))
            if order is None:
                return self._result(body, 42)
            order["queries"] = order.get("queries", 0) + 1
            refunds = [r for r in self.store.refunds if r["gateway"] == "momo" and r["txn_ref"] == order["order_id"]]
            extra = {"amount": order["amount"], "transId": order["trans_id"] or 0, "payType": order["pay_type"],
                     "extraData": order["extra_data"],
                     "refundTrans": [{"orderId": r["refund_order_id"], "amount": r["amount"], "resultCode": 0,
                                      "transId": r["refund_trans_id"]} for r in refunds]}
            code = order["result_code"]
        answer = self._result(body, code, **extra)
        return answer

    def refund(self, request):
        body = self._body(request)
        if body is None:
            return self._json({"resultCode": 20, "message": MESSAGES[20]}, 400)
        if not self._verified(body, REFUND_FIELDS):
            return self._result(body, 13)
        with self.store.lock:
            paid = next((o for o in self.store.momo_orders.values()
                         if o["trans_id"] is not None and o["trans_id"] == body.get("transId")
                         and o["result_code"] == PAID), None)
            if paid is None:
                return self._result(body, 42)
            if body.get("orderId") in self.store.momo_orders or any(
                    r.get("refund_order_id") == body.get("orderId") for r in self.store.refunds):
                return self._result(body, 41)
            refunded = sum(r["amount"] for r in self.store.refunds if r["gateway"] == "momo"
                           and r["txn_ref"] == paid["order_id"])
            amount = body.get("amount")
            if not isinstance(amount, int) or amount <= 0 or refunded + amount > paid["amount"]:
                return self._result(body, 22)
            refund_trans_id = next(self._trans_ids)
            self.store.refunds.append({"gateway": "momo", "txn_ref": paid["order_id"], "amount": amount,
                                       "refund_order_id": body["orderId"], "refund_trans_id": refund_trans_id,
                                       "description": body.get("description"), "at": now_vn().isoformat()})
        return self._result(body, PAID, amount=amount, transId=refund_trans_id)

    # --- the citizen's browser ---

    def pay_page(self, request):
        token = request.args.get("t", "")
        with self.store.lock:
            order = next((o for o in self.store.momo_orders.values() if o["token"] == token), None)
        if order is None:
            return Response(pages.error_page("MoMo", "Không tìm thấy giao dịch."), status=404, mimetype="text/html")
        if order["result_code"] != CREATED:
            return Response(pages.error_page("MoMo", "Giao dịch đã được xử lý."), status=409, mimetype="text/html")
        rows = [("Mã đơn hàng", order["order_id"]), ("Nội dung", order["order_info"])]
        return Response(pages.pay_page("MoMo", f"/momo/pay/{token}", order["amount"], rows), mimetype="text/html")

    def checkout(self, request, token):
        paid = request.values.get("action", "pay") == "pay"
        with self.store.lock:
            order = next((o for o in self.store.momo_orders.values() if o["token"] == token), None)
            if order is None or order["result_code"] != CREATED:
                return Response(pages.error_page("MoMo", "Phiên thanh toán không tồn tại hoặc đã kết thúc."),
                                status=409, mimetype="text/html")
            order["result_code"] = PAID if paid else USER_DENIED
            order["trans_id"] = next(self._trans_ids)
            order["pay_type"] = "qr"
            order["response_time"] = millis()
        result = self.result_body(order)
        deliver(self.store, "momo_ipn", "POST", order["ipn_url"], result, as_json=True,
                accepted=lambda response: response.status_code == 204,
                attempts=self.settings.ipn_attempts, retry_seconds=self.settings.ipn_retry_seconds)
        url = order["redirect_url"]
        return redirect(f"{url}{'&' if '?' in url else '?'}{urlencode(result)}", code=302)

    def result_body(self, order):
        body = {
            "partnerCode": self.settings.momo_partner_code,
            "orderId": order["order_id"],
            "requestId": order["request_id"],
            "amount": order["amount"],
            "orderInfo": order["order_info"],
            "orderType": "momo_wallet",
            "transId": order["trans_id"],
            "resultCode": order["result_code"],
            "message": MESSAGES[order["result_code"]],
            "payType": order["pay_type"],
            "responseTime": order["response_time"],
            "extraData": order["extra_data"],
        }
        body["signature"] = self.sign(body, IPN_FIELDS)
        return body


def new_request_id():
    return uuid.uuid4().hex
