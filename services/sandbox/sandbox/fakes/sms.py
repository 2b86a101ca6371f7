"""Fakes of the SMS providers, eSMS and SpeedSMS, written from docs/protocols.md.

They check the request format the real APIs expect, record what they were
sent, and can be scripted to fail (``fake.script("99", "http_500",
"timeout")``; each entry answers one request, then the fake accepts again).
"""
import base64
import json
import time
import uuid
from collections import deque

from sandbox.fakes.server import FakeServer, hang_up, json_response

ESMS_PATH = "/MainService.svc/json/SendMultipleMessage_V4_post_json/"
SPEEDSMS_PATH = "/index.php/sms/send"
ESMS_FIELDS = ("ApiKey", "SecretKey", "Phone", "Content", "Brandname", "SmsType", "IsUnicode", "Sandbox",
               "RequestId", "CallbackUrl")


class FakeSmsProvider(FakeServer):
    """Base of the SMS fakes: a failure script, a slow mode and records."""

    name = "fake"

    def __init__(self, timeout_seconds=3.0, **server):
        super().__init__(**server)
        self.timeout_seconds = timeout_seconds  # a scripted "timeout" keeps the caller waiting this long
        self.delay_seconds = 0.0  # a slow provider: every request waits this long, then is handled as usual
        self.requests = []        # every request body (parsed), in order, with "at" (time.time() on arrival)
        self.delivered = []       # what reached a citizen: {"phone", "content", ...}
        self.format_errors = []   # requests that the real API would not understand
        self._script = deque()
        self._always = None

    # -- control -----------------------------------------------------------
    def script(self, *behaviours):
        """Queue answers for the next requests: a provider code, ``http_<status>`` or ``timeout``."""
        with self.lock:
            self._script.extend(behaviours)

    def always(self, behaviour):
        """Answer every further request with ``behaviour`` (``None`` to accept again)."""
        self._always = behaviour

    def scripted(self):
        """The answers still queued, in order."""
        with self.lock:
            return list(self._script)

    def accept_again(self):
        """Forget the script and ``always``: every further request is handled as the provider would."""
        with self.lock:
            self._script.clear()
        self._always = None

    def _next_behaviour(self):
        with self.lock:
            if self._script:
                return self._script.popleft()
        return self._always

    # -- request handling --------------------------------------------------
    def app(self, request):
        status, answer = self.handle(request.path, dict(request.headers), request.get_data())
        return json_response(answer, status)

    def handle(self, path, headers, raw):
        """``(http_status, answer)``; a scripted ``timeout`` hangs up without an answer instead."""
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            body = None
        self.requests.append({"path": path, "headers": headers, "body": body, "at": time.time()})
        problems = self.check(path, headers, body)
        if problems:
            self.format_errors.append({"path": path, "problems": problems, "body": body})
            return 400, {"error": "; ".join(problems)}
        if self.delay_seconds:
            time.sleep(self.delay_seconds)  # the caller may give up meanwhile; the request is handled anyway
        behaviour = self._next_behaviour()
        if behaviour == "timeout":
            hang_up(self.timeout_seconds)
        if behaviour and str(behaviour).startswith("http_"):
            return int(behaviour[5:]), {"error": "scripted"}
        return 200, self.answer(body, behaviour)

    def check(self, path, headers, body):
        """What the real API would not understand in this request (empty when nothing)."""
        raise NotImplementedError

    def answer(self, body, behaviour):
        """The provider's answer to a well-formed request; ``behaviour``: a scripted provider code, or None."""
        raise NotImplementedError


def _json_headers_problems(headers):
    if "application/json" in (headers.get("Content-Type") or ""):
        return []
    return ["Content-Type must be application/json"]


class FakeEsms(FakeSmsProvider):
    """eSMS SendMultipleMessage_V4_post_json, RequestId de-duplication (124) included."""

    name = "esms"

    def __init__(self, api_key="esms-key", secret_key="esms-secret", brandname="DICHVUCONG", **kwargs):
        super().__init__(**kwargs)
        self.api_key, self.secret_key, self.brandname = api_key, secret_key, brandname
        self.accepted_request_ids = {}

    def check(self, path, headers, body):
        problems = [f"unknown path {path}"] if path != ESMS_PATH else []
        problems += _json_headers_problems(headers)
        if not isinstance(body, dict):
            return problems + ["body must be a JSON object"]
        for field in ESMS_FIELDS:
            if field not in body:
                problems.append(f"missing {field}")
            elif not isinstance(body[field], str):
                problems.append(f"{field} must be a string")
        if problems:
            return problems
        if body["SmsType"] != "2" or body["IsUnicode"] != "0" or body["Sandbox"] != "0":
            problems.append("SmsType/IsUnicode/Sandbox must be \"2\"/\"0\"/\"0\"")
        if not (body["Phone"].isdigit() and body["Phone"].startswith("84") and len(body["Phone"]) == 11):
            problems.append("Phone must be 84xxxxxxxxx")
        if not body["Content"] or not body["Content"].isascii():
            problems.append("Content must be non-empty ASCII (IsUnicode 0)")
        if not body["RequestId"]:
            problems.append("RequestId is empty")
        return problems

    def answer(self, body, behaviour):
        if behaviour:
            return {"CodeResult": str(behaviour), "ErrorMessage": "scripted"}
        if body["ApiKey"] != self.api_key or body["SecretKey"] != self.secret_key:
            return {"CodeResult": "101", "ErrorMessage": "Authorize Failed"}
        if body["Brandname"] != self.brandname:
            return {"CodeResult": "104", "ErrorMessage": "Brandname not registered"}
        with self.lock:
            if body["RequestId"] in self.accepted_request_ids:
                return {"CodeResult": "124", "ErrorMessage": "Duplicate RequestId"}
            sms_id = uuid.uuid4().hex
            self.accepted_request_ids[body["RequestId"]] = sms_id
            self.delivered.append({"phone": body["Phone"], "content": body["Content"], "request_id": body["RequestId"],
                                   "sms_id": sms_id, "callback_url": body["CallbackUrl"], "at": time.time()})
        return {"CodeResult": "100", "CountRegenerate": 0, "SMSID": sms_id}


class FakeSpeedSms(FakeSmsProvider):
    """SpeedSMS ``/index.php/sms/send`` with Basic auth ``token:x``."""

    name = "speedsms"

    def __init__(self, access_token="speed-token", sender="DICHVUCONG", **kwargs):
        super().__init__(**kwargs)
        self.access_token, self.sender = access_token, sender

    def check(self, path, headers, body):
        problems = [f"unknown path {path}"] if path != SPEEDSMS_PATH else []
        problems += _json_headers_problems(headers)
        expected = "Basic " + base64.b64encode(f"{self.access_token}:x".encode()).decode()
        if (headers.get("Authorization") or "") != expected:
            problems.append("Basic auth must be <token>:x")
        if not isinstance(body, dict):
            return problems + ["body must be a JSON object"]
        to = body.get("to")
        if not (isinstance(to, list) and len(to) == 1 and isinstance(to[0], str) and to[0].isdigit()):
            problems.append("to must be a list with one phone number")
        if not isinstance(body.get("content"), str) or not body["content"] or not body["content"].isascii():
            problems.append("content must be non-empty ASCII")
        if body.get("sms_type") not in (2, 3, 4, 5, 6, "2", "3", "4", "5", "6"):
            problems.append("sms_type must be a SpeedSMS type")
        if body.get("sender") != self.sender:
            problems.append("sender must be the registered brandname")
        return problems

    def answer(self, body, behaviour):
        if behaviour:
            return {"status": "error", "code": str(behaviour), "message": "scripted"}
        with self.lock:
            tran_id = len(self.delivered) + 1000
            self.delivered.append({"phone": body["to"][0], "content": body["content"], "tran_id": tran_id,
                                   "at": time.time()})
        return {"status": "success", "code": "00",
                "data": {"tranId": tran_id, "totalSMS": 1, "totalPrice": 250, "invalidPhone": []}}
