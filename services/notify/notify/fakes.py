"""Fakes of the providers: HTTP servers speaking eSMS and SpeedSMS, and an SMTP sink.

They check the request format the real APIs expect, record what they were
sent, and can be scripted to fail (``fake.script("99", "http_500",
"timeout")``; each entry answers one request, then the fake accepts again).
The test suite uses them, and so can a local sandbox (``python -m
notify.fakes`` serves both on ports 9101/9102 and an SMTP sink on 1025).
"""
import base64
import json
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ESMS_PATH = "/MainService.svc/json/SendMultipleMessage_V4_post_json/"
SPEEDSMS_PATH = "/index.php/sms/send"
ESMS_FIELDS = ("ApiKey", "SecretKey", "Phone", "Content", "Brandname", "SmsType", "IsUnicode", "Sandbox",
               "RequestId", "CallbackUrl")


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        status, answer = self.server.fake.handle(self.path, dict(self.headers), body)
        if status is None:  # scripted timeout: keep the caller waiting, then hang up
            return
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


class FakeSmsProvider:
    """Base of the HTTP fakes: a server on a free port, a failure script, and records."""

    name = "fake"
    path = "/"

    def __init__(self, host="127.0.0.1", port=0, timeout_seconds=3.0):
        self.host, self.port = host, port
        self.timeout_seconds = timeout_seconds
        self.delay_seconds = 0.0  # a slow provider: every request waits this long, then is handled as usual
        self.requests = []        # every request body (parsed), in order, with "at" (time.time() on arrival)
        self.delivered = []       # what reached a citizen: {"phone", "content", ...}
        self.format_errors = []   # requests that the real API would not understand
        self._script = deque()
        self._lock = threading.Lock()
        self._server = None

    # -- control -----------------------------------------------------------
    def start(self):
        self._server = ThreadingHTTPServer((self.host, self.port), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self):
        return f"http://{self.host}:{self.port}"

    def script(self, *behaviours):
        """Queue answers for the next requests: a provider code, ``http_<status>`` or ``timeout``."""
        self._script.extend(behaviours)

    def always(self, behaviour):
        """Answer every further request with ``behaviour`` (``None`` to accept again)."""
        self._always = behaviour

    _always = None

    def _next_behaviour(self):
        with self._lock:
            if self._script:
                return self._script.popleft()
        return self._always

    # -- request handling --------------------------------------------------
    def handle(self, path, headers, raw):
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
            time.sleep(self.timeout_seconds)
            return None, None
        if behaviour and str(behaviour).startswith("http_"):
            return int(behaviour[5:]), {"error": "scripted"}
        return 200, self.answer(body, behaviour)

    def check(self, path, headers, body):
        raise NotImplementedError

    def answer(self, body, behaviour):
        raise NotImplementedError


class FakeEsms(FakeSmsProvider):
    """eSMS SendMultipleMessage_V4_post_json, RequestId de-duplication (124) included."""

    name = "esms"

    def __init__(self, api_key="esms-key", secret_key="esms-secret", brandname="DICHVUCONG", **kwargs):
        super().__init__(**kwargs)
        self.api_key, self.secret_key, self.brandname = api_key, secret_key, brandname
        self.accepted_request_ids = {}

    def check(self, path, headers, body):
        problems = []
        if path != ESMS_PATH:
            problems.append(f"unknown path {path}")
        if "application/json" not in (headers.get("Content-Type") or ""):
            problems.append("Content-Type must be application/json")
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
        with self._lock:
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
        problems = []
        if path != SPEEDSMS_PATH:
            problems.append(f"unknown path {path}")
        if "application/json" not in (headers.get("Content-Type") or ""):
            problems.append("Content-Type must be application/json")
        auth = headers.get("Authorization") or ""
        expected = "Basic " + base64.b64encode(f"{self.access_token}:x".encode()).decode()
        if auth != expected:
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
        tran_id = len(self.delivered) + 1000
        self.delivered.append({"phone": body["to"][0], "content": body["content"], "tran_id": tran_id,
                               "at": time.time()})
        return {"status": "success", "code": "00",
                "data": {"tranId": tran_id, "totalSMS": 1, "totalPrice": 250, "invalidPhone": []}}


class RecordingSmtpHandler:
    """aiosmtpd handler keeping every message (``envelope``s) in ``messages``; can refuse recipients."""

    def __init__(self):
        self.messages = []
        self.refuse = {}   # address → SMTP reply, e.g. "550 5.1.1 no such user" or "451 4.3.0 try later"
        self.rcpts = []    # every RCPT TO: (address, time.monotonic(), accepted)
        self.peers = set()  # (host, port) of every client connection that sent a recipient
        self.received_at = []  # time.time() of every accepted message, in order
        self._refuse_next = {}  # address → deque of replies, one per next RCPT

    def refuse_next(self, address, reply, times=1):
        """Refuse the next ``times`` deliveries to ``address`` with ``reply``, then accept again."""
        self._refuse_next.setdefault(address, deque()).extend([reply] * times)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd API)
        scripted = self._refuse_next.get(address)
        reply = scripted.popleft() if scripted else self.refuse.get(address)
        self.rcpts.append((address, time.monotonic(), reply is None))
        self.peers.add(tuple(session.peer) if session.peer else None)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        self.messages.append(envelope)
        self.received_at.append(time.time())
        return "250 Message accepted for delivery"


def main():
    """Serve the fakes for a local sandbox until interrupted."""
    esms = FakeEsms(port=9101).start()
    speedsms = FakeSpeedSms(port=9102).start()
    try:
        from aiosmtpd.controller import Controller

        smtp = Controller(RecordingSmtpHandler(), hostname="127.0.0.1", port=1025)
        smtp.start()
    except ImportError:
        smtp = None
    print(f"eSMS fake {esms.base_url}, SpeedSMS fake {speedsms.base_url}, SMTP sink 127.0.0.1:1025")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
