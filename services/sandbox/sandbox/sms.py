"""Fake eSMS (SendMultipleMessage_V4_post_json, delivery receipts) and SpeedSMS (/index.php/sms/send)."""
import base64
import json
import re
import uuid

from werkzeug.wrappers import Response

from sandbox.callbacks import deliver

VN_MOBILE = re.compile(r"^(0|84|\+84)(3|5|7|8|9)\d{8}$")


def _json(answer, status=200):
    return Response(json.dumps(answer, ensure_ascii=False), status=status, mimetype="application/json")


def _body(request):
    text = request.get_data(as_text=True) or ""
    try:
        body = json.loads(text) if text.strip() else request.form.to_dict()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class FakeEsms:
    PATH = "/MainService.svc/json/SendMultipleMessage_V4_post_json/"

    def __init__(self, settings, store):
        self.settings = settings
        self.store = store

    def send(self, request):
        body = _body(request)
        if body is None:
            return _json({"CodeResult": "99", "ErrorMessage": "Invalid JSON"})
        if body.get("ApiKey") != self.settings.esms_api_key or body.get("SecretKey") != self.settings.esms_secret_key:
            return _json({"CodeResult": "101", "ErrorMessage": "Authorize Failed"})
        if body.get("Brandname") != self.settings.esms_brandname:
            return _json({"CodeResult": "104", "ErrorMessage": "Brandname not registered"})
        fault = self.store.faults.take("esms")
        if fault:
            return _json({"CodeResult": fault, "ErrorMessage": "Sandbox: injected failure"})
        phone, content = str(body.get("Phone") or ""), str(body.get("Content") or "")
        if not VN_MOBILE.match(phone) or not content:
            return _json({"CodeResult": "789", "ErrorMessage": "Invalid phone number or empty content"})
        request_id = str(body.get("RequestId") or "")
        with self.store.lock:
            if request_id and request_id in self.store.esms_request_ids:
                return _json({"CodeResult": "124", "ErrorMessage": "Duplicate RequestId"})
            sms_id = str(uuid.uuid4())
            if request_id:
                self.store.esms_request_ids[request_id] = sms_id
            self.store.add_message("sms", "esms", phone, content, brandname=body.get("Brandname"),
                                   request_id=request_id, sms_id=sms_id, unicode=body.get("IsUnicode"),
                                   ascii_only=content.isascii())
        if body.get("CallbackUrl"):
            receipt = {"SMSID": sms_id, "RequestId": request_id, "SendStatus": "5", "SendSuccess": "1",
                       "SendFailed": "0", "TotalReceiver": "1", "TotalSent": "1", "phonenumber": phone}
            deliver(self.store, "esms_receipt", "POST", body["CallbackUrl"], receipt, as_json=True,
                    accepted=lambda response: response.status_code < 500, attempts=3,
                    delay=self.settings.receipt_delay_seconds)
        return _json({"CodeResult": "100", "CountRegenerate": 0, "SMSID": sms_id})


class FakeSpeedSms:
    PATH = "/index.php/sms/send"

    def __init__(self, settings, store):
        self.settings = settings
        self.store = store
        self._tran_ids = iter(range(900001, 10**9))

    def _token(self, request):
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            return base64.b64decode(header[6:]).decode().partition(":")[0]
        except ValueError:
            return None

    def send(self, request):
        if self._token(request) != self.settings.speedsms_access_token:
            return _json({"status": "error", "code": "007", "message": "invalid access token"}, 401)
        body = _body(request)
        if body is None or not isinstance(body.get("to"), list) or not body.get("content"):
            return _json({"status": "error", "code": "100", "message": "invalid parameters"})
        fault = self.store.faults.take("speedsms")
        if fault:
            return _json({"status": "error", "code": fault, "message": "Sandbox: injected failure"})
        numbers = [str(number) for number in body["to"]]
        invalid = [number for number in numbers if not VN_MOBILE.match(number)]
        valid = [number for number in numbers if number not in invalid]
        with self.store.lock:
            tran_id = next(self._tran_ids)
            for number in valid:
                self.store.add_message("sms", "speedsms", number, str(body["content"]), sender=body.get("sender"),
                                       sms_type=body.get("sms_type"), tran_id=tran_id,
                                       ascii_only=str(body["content"]).isascii())
        return _json({"status": "success", "code": "00",
                      "data": {"tranId": tran_id, "totalSMS": len(valid), "totalPrice": 600 * len(valid),
                               "invalidPhone": invalid}})
