"""Fake VNPay 2.1.0: pay page, signed IPN and return URL, querydr and refund (see shared/PROTOCOLS.md)."""
import hashlib
import hmac
import json
import secrets
from datetime import datetime
from urllib.parse import urlencode

from werkzeug.utils import redirect
from werkzeug.wrappers import Response

from sandbox import pages
from sandbox.callbacks import deliver
from sandbox.store import VN_TZ, now_vn

SIGNATURE_FIELDS = ("vnp_SecureHash", "vnp_SecureHashType")
QUERY_HASH_ORDER = ("RequestId", "Version", "Command", "TmnCode", "TxnRef", "TransactionDate", "CreateDate",
                    "IpAddr", "OrderInfo")
QUERY_ANSWER_HASH_ORDER = ("ResponseId", "Command", "ResponseCode", "Message", "TmnCode", "TxnRef", "Amount",
                           "BankCode", "PayDate", "TransactionNo", "TransactionType", "TransactionStatus",
                           "OrderInfo", "PromotionCode", "PromotionAmount")
REFUND_HASH_ORDER = ("RequestId", "Version", "Command", "TmnCode", "TransactionType", "TxnRef", "Amount",
                     "TransactionNo", "TransactionDate", "CreateBy", "CreateDate", "IpAddr", "OrderInfo")
REFUND_ANSWER_HASH_ORDER = ("ResponseId", "Command", "ResponseCode", "Message", "TmnCode", "TxnRef", "Amount",
                            "BankCode", "PayDate", "TransactionNo", "TransactionType", "TransactionStatus",
                            "OrderInfo")
IPN_ACCEPTED = {"00", "01", "02", "04", "97"}  # any valid answer ends the retries; only 99 / no answer retries


def timestamp(moment=None):
    return (moment or now_vn()).astimezone(VN_TZ).strftime("%Y%m%d%H%M%S")


def hash_data(params):
    items = sorted((k, str(v)) for k, v in params.items()
                   if k.startswith("vnp_") and k not in SIGNATURE_FIELDS and v not in (None, ""))
    return urlencode(items)


def sign(params, secret):
    return hmac.new(secret.encode(), hash_data(params).encode(), hashlib.sha512).hexdigest()


def pipe_sign(body, order, secret):
    text = "|".join(str(body.get(f"vnp_{name}", "") or "") for name in order)
    return hmac.new(secret.encode(), text.encode(), hashlib.sha512).hexdigest()


def _same(expected, given):
    return bool(given) and hmac.compare_digest(expected, str(given).lower())


class FakeVnpay:
    def __init__(self, settings, store):
        self.settings = settings
        self.store = store
        self._transaction_numbers = iter(range(14000001, 10**9))

    @property
    def ipn_url(self):
        return self.settings.payment_callback_base_url + "/callbacks/vnpay/ipn"

    # --- the citizen's browser ---

    def pay_page(self, request):
        params = request.args.to_dict()
        problem = self._check_pay_request(params)
        if problem:
            return Response(pages.error_page("VNPAY", problem), status=400, mimetype="text/html")
        txn_ref = params["vnp_TxnRef"]
        with self.store.lock:
            order = self.store.vnpay_orders.get(txn_ref)
            if order is None:
                order = {
                    "txn_ref": txn_ref, "amount": int(params["vnp_Amount"]) // 100, "params": params,
                    "transaction_status": "01", "response_code": None, "transaction_no": "", "pay_date": "",
                    "bank_code": params.get("vnp_BankCode") or "NCB", "seen_at": now_vn().isoformat(),
                }
                self.store.vnpay_orders[txn_ref] = order
            elif order["transaction_status"] != "01":
                return Response(pages.error_page("VNPAY", "Giao dịch đã được xử lý."), status=409,
                                mimetype="text/html")
            token = secrets.token_urlsafe(12)
            self.store.vnpay_checkouts[token] = txn_ref
        rows = [("Đơn vị", params["vnp_TmnCode"]), ("Mã giao dịch", txn_ref),
                ("Nội dung", params.get("vnp_OrderInfo", "")), ("Ngân hàng", order["bank_code"])]
        html = pages.pay_page("VNPAY", f"/vnpay/checkout/{token}", order["amount"], rows)
        return Response(html, mimetype="text/html")

    def _check_pay_request(self, params):
        if params.get("vnp_TmnCode") != self.settings.vnpay_tmn_code:
            return "Website này chưa được phê duyệt (vnp_TmnCode sai)."
        if not _same(sign(params, self.settings.vnpay_hash_secret), params.get("vnp_SecureHash")):
            return "Sai chữ ký (vnp_SecureHash)."
        missing = [name for name in ("vnp_Version", "vnp_Command", "vnp_Amount", "vnp_CurrCode", "vnp_TxnRef",
                                     "vnp_OrderInfo", "vnp_ReturnUrl", "vnp_IpAddr", "vnp_CreateDate",
                                     "vnp_Locale", "vnp_OrderType")
                   if not params.get(name)]
        if missing:
            return "Thiếu tham số: " + ", ".join(missing)
        if params["vnp_Version"] != "2.1.0" or params["vnp_Command"] != "pay" or params["vnp_CurrCode"] != "VND":
            return "vnp_Version / vnp_Command / vnp_CurrCode không hợp lệ."
        try:
            amount = int(params["vnp_Amount"])
        except ValueError:
            return "vnp_Amount không hợp lệ."
        if amount <= 0 or amount % 100:
            return "vnp_Amount phải là số tiền VND × 100."
        expire = params.get("vnp_ExpireDate")
        if expire:
            try:
                if datetime.strptime(expire, "%Y%m%d%H%M%S").replace(tzinfo=VN_TZ) < now_vn():
                    return "Giao dịch đã quá thời gian chờ thanh toán."
            except ValueError:
                return "vnp_ExpireDate không hợp lệ."
        return None

    def checkout(self, request, token):
        """The citizen pressed "Thanh toán" or "Hủy": IPN to the merchant, then back to its return URL."""
        paid = request.values.get("action", "pay") == "pay"
        with self.store.lock:
            txn_ref = self.store.vnpay_checkouts.pop(token, None)
            order = self.store.vnpay_orders.get(txn_ref) if txn_ref else None
            if order is None or order["transaction_status"] != "01":
                return Response(pages.error_page("VNPAY", "Phiên thanh toán không tồn tại hoặc đã kết thúc."),
                                status=409, mimetype="text/html")
            order["response_code"] = "00" if paid else "24"
            order["transaction_status"] = "00" if paid else "02"
            order["transaction_no"] = str(next(self._transaction_numbers)) if paid else "0"
            order["pay_date"] = timestamp()
        result = self.result_params(order)
        deliver(self.store, "vnpay_ipn", "GET", self.ipn_url, result, accepted=self._ipn_answered,
                attempts=self.settings.ipn_attempts, retry_seconds=self.settings.ipn_retry_seconds)
        return_url = order["params"]["vnp_ReturnUrl"]
        return redirect(f"{return_url}{'&' if '?' in return_url else '?'}{urlencode(result)}", code=302)

    @staticmethod
    def _ipn_answered(response):
        try:
            return response.status_code == 200 and response.json().get("RspCode") in IPN_ACCEPTED
        except ValueError:
            return False

    def result_params(self, order):
        params = {
            "vnp_Amount": str(order["amount"] * 100),
            "vnp_BankCode": order["bank_code"],
            "vnp_BankTranNo": f"VNP{order['transaction_no']}" if order["response_code"] == "00" else "",
            "vnp_CardType": "ATM",
            "vnp_OrderInfo": order["params"].get("vnp_OrderInfo", ""),
            "vnp_PayDate": order["pay_date"],
            "vnp_ResponseCode": order["response_code"],
            "vnp_TmnCode": self.settings.vnpay_tmn_code,
            "vnp_TransactionNo": order["transaction_no"],
            "vnp_TransactionStatus": order["transaction_status"],
            "vnp_TxnRef": order["txn_ref"],
        }
        params = {k: v for k, v in params.items() if v not in (None, "")}
        params["vnp_SecureHash"] = sign(params, self.settings.vnpay_hash_secret)
        return params

    # --- merchant API: querydr and refund ---

    def api(self, request):
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._answer({"vnp_ResponseCode": "03", "vnp_Message": "Invalid data format"}, None)
        command = body.get("vnp_Command")
        if command == "querydr":
            return self._querydr(body)
        if command == "refund":
            return self._refund(body)
        return self._answer({"vnp_ResponseCode": "03", "vnp_Command": command or "",
                             "vnp_Message": "Unknown vnp_Command"}, None)

    def _answer(self, answer, order_of_hash):
        answer.setdefault("vnp_ResponseId", secrets.token_hex(16))
        answer.setdefault("vnp_TmnCode", self.settings.vnpay_tmn_code)
        if order_of_hash:
            answer["vnp_SecureHash"] = pipe_sign(answer, order_of_hash, self.settings.vnpay_hash_secret)
        return Response(json.dumps(answer), mimetype="application/json")

    def _precheck(self, body, order_of_hash, answer_order):
        """Common checks; returns an answer Response to send instead, or None when the request is good."""
        base = {"vnp_Command": body.get("vnp_Command"), "vnp_TxnRef": body.get("vnp_TxnRef", "")}
        if body.get("vnp_TmnCode") != self.settings.vnpay_tmn_code:
            return self._answer({**base, "vnp_ResponseCode": "02", "vnp_Message": "Invalid TmnCode"}, answer_order)
        if not _same(pipe_sign(body, order_of_hash, self.settings.vnpay_hash_secret), body.get("vnp_SecureHash")):
            return self._answer({**base, "vnp_ResponseCode": "97", "vnp_Message": "Invalid Checksum"}, answer_order)
        with self.store.lock:
            request_id = body.get("vnp_RequestId")
            if not request_id or request_id in self.store.vnpay_request_ids:
                return self._answer({**base, "vnp_ResponseCode": "94", "vnp_Message": "Duplicate request"},
                                    answer_order)
            self.store.vnpay_request_ids.add(request_id)
        return None

    def _order_answer(self, command, order, body):
        return {
            "vnp_Command": command,
            "vnp_ResponseCode": "00",
            "vnp_Message": "Successful",
            "vnp_TxnRef": order["txn_ref"],
            "vnp_Amount": str(order["amount"] * 100),
            "vnp_OrderInfo": body.get("vnp_OrderInfo", ""),
            "vnp_BankCode": order["bank_code"],
            "vnp_PayDate": order["pay_date"],
            "vnp_TransactionNo": order["transaction_no"],
            "vnp_TransactionType": "01",
            "vnp_TransactionStatus": order["transaction_status"],
            "vnp_PromotionCode": "",
            "vnp_PromotionAmount": "",
        }

    def _querydr(self, body):
        rejected = self._precheck(body, QUERY_HASH_ORDER, QUERY_ANSWER_HASH_ORDER)
        if rejected:
            return rejected
        with self.store.lock:
            order = self.store.vnpay_orders.get(body.get("vnp_TxnRef"))
            if order is None:
                return self._answer({"vnp_Command": "querydr", "vnp_ResponseCode": "91",
                                     "vnp_Message": "Transaction not found", "vnp_TxnRef": body.get("vnp_TxnRef", "")},
                                    QUERY_ANSWER_HASH_ORDER)
            order["queries"] = order.get("queries", 0) + 1
            answer = self._order_answer("querydr", order, body)
        return self._answer(answer, QUERY_ANSWER_HASH_ORDER)

    def _refund(self, body):
        rejected = self._precheck(body, REFUND_HASH_ORDER, REFUND_ANSWER_HASH_ORDER)
        if rejected:
            return rejected
        with self.store.lock:
            order = self.store.vnpay_orders.get(body.get("vnp_TxnRef"))
            if order is None or order["transaction_status"] != "00":
                return self._answer({"vnp_Command": "refund", "vnp_ResponseCode": "91",
                                     "vnp_Message": "Transaction not found or not paid",
                                     "vnp_TxnRef": body.get("vnp_TxnRef", "")}, REFUND_ANSWER_HASH_ORDER)
            try:
                amount = int(body.get("vnp_Amount")) // 100
            except (TypeError, ValueError):
                amount = -1
            refunded = sum(r["amount"] for r in self.store.refunds if r["gateway"] == "vnpay"
                           and r["txn_ref"] == order["txn_ref"])
            if amount <= 0 or refunded + amount > order["amount"]:
                return self._answer({"vnp_Command": "refund", "vnp_ResponseCode": "03",
                                     "vnp_Message": "Invalid amount", "vnp_TxnRef": order["txn_ref"]},
                                    REFUND_ANSWER_HASH_ORDER)
            self.store.refunds.append({"gateway": "vnpay", "txn_ref": order["txn_ref"], "amount": amount,
                                       "type": body.get("vnp_TransactionType"), "by": body.get("vnp_CreateBy"),
                                       "at": now_vn().isoformat()})
            answer = self._order_answer("refund", order, body)
            answer["vnp_TransactionType"] = body.get("vnp_TransactionType", "02")
            answer["vnp_Amount"] = str(amount * 100)
            answer.pop("vnp_PromotionCode")
            answer.pop("vnp_PromotionAmount")
        return self._answer(answer, REFUND_ANSWER_HASH_ORDER)
