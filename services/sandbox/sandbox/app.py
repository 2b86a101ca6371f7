"""The sandbox's WSGI application: one URL map over every fake provider and the outbox pages."""
import json

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox import pages
from sandbox.momo import FakeMomo
from sandbox.sms import FakeEsms, FakeSpeedSms
from sandbox.vnpay import FakeVnpay


def json_response(document, status=200):
    return Response(json.dumps(document, ensure_ascii=False, indent=1), status=status,
                    mimetype="application/json")


class SandboxApp:
    def __init__(self, settings, store):
        self.settings = settings
        self.store = store
        self.vnpay = FakeVnpay(settings, store)
        self.momo = FakeMomo(settings, store)
        self.esms = FakeEsms(settings, store)
        self.speedsms = FakeSpeedSms(settings, store)
        self.urls = Map([
            Rule("/", endpoint=self.outbox_html, methods=["GET"]),
            Rule("/outbox", endpoint=self.outbox_html, methods=["GET"]),
            Rule("/outbox.json", endpoint=self.outbox_json, methods=["GET"]),
            Rule("/payments.json", endpoint=self.payments_json, methods=["GET"]),
            Rule("/healthz", endpoint=self.healthz, methods=["GET"]),
            Rule("/_sandbox/reset", endpoint=self.reset, methods=["POST"]),
            Rule("/_sandbox/faults", endpoint=self.faults, methods=["GET", "POST", "DELETE"]),
            Rule(settings.vnpay_payment_path, endpoint=self.vnpay.pay_page, methods=["GET"]),
            Rule("/vnpay/checkout/<token>", endpoint=self.vnpay.checkout, methods=["GET", "POST"]),
            Rule(settings.vnpay_api_path, endpoint=self.vnpay.api, methods=["POST"]),
            Rule("/v2/gateway/api/create", endpoint=self.momo.create, methods=["POST"]),
            Rule("/v2/gateway/api/query", endpoint=self.momo.query, methods=["POST"]),
            Rule("/v2/gateway/api/refund", endpoint=self.momo.refund, methods=["POST"]),
            Rule("/momo/pay", endpoint=self.momo.pay_page, methods=["GET"]),
            Rule("/momo/pay/<token>", endpoint=self.momo.checkout, methods=["GET", "POST"]),
            Rule(FakeEsms.PATH, endpoint=self.esms.send, methods=["POST"]),
            Rule(FakeEsms.PATH.rstrip("/"), endpoint=self.esms.send, methods=["POST"]),
            Rule(FakeSpeedSms.PATH, endpoint=self.speedsms.send, methods=["POST"]),
        ], strict_slashes=False)

    def outbox_html(self, request):
        return Response(pages.outbox_page(self.store.outbox()), mimetype="text/html")

    def outbox_json(self, request):
        messages = self.store.outbox()
        for name in ("channel", "to", "provider"):
            if request.args.get(name):
                messages = [m for m in messages if m[name] == request.args[name]]
        if request.args.get("contains"):
            needle = request.args["contains"]
            messages = [m for m in messages if needle in (m["text"] or "") or needle in (m["subject"] or "")]
        return json_response({"messages": messages})

    def payments_json(self, request):
        return json_response(self.store.payments())

    def healthz(self, request):
        return json_response({"status": "ok"})

    def reset(self, request):
        self.store.reset()
        return json_response({"status": "reset"})

    def faults(self, request):
        """``POST {"provider": "esms", "code": "99", "times": 2}`` (times -1 = until DELETE)."""
        if request.method == "POST":
            body = request.get_json(force=True, silent=True) or {}
            if body.get("provider") not in ("esms", "speedsms", "smtp") or not body.get("code"):
                return json_response({"error": "provider (esms|speedsms|smtp) and code required"}, 400)
            self.store.faults.plan(body["provider"], body["code"], body.get("times", 1))
        elif request.method == "DELETE":
            self.store.faults.clear()
        return json_response(self.store.faults.snapshot())

    def __call__(self, environ, start_response):
        request = Request(environ)
        adapter = self.urls.bind_to_environ(environ)
        try:
            endpoint, values = adapter.match()
            response = endpoint(request, **values)
        except NotFound:
            response = json_response({"error": "not found", "path": request.path}, 404)
        except HTTPException as exc:
            response = exc
        return response(environ, start_response)
