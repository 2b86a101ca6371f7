"""The sandbox's WSGI application: one URL map over every fake provider and the outbox pages."""
import json

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox import pages
from sandbox.fakes.momo import CREATE_PATH, QUERY_PATH, REFUND_PATH
from sandbox.fakes.sms import ESMS_PATH, SPEEDSMS_PATH
from sandbox.messaging import SandboxEsms, SandboxSpeedSms
from sandbox.national_portal import SandboxNationalPortal
from sandbox.payments import SandboxMomo, SandboxVnpay


def json_response(document, status=200):
    return Response(json.dumps(document, ensure_ascii=False, indent=1, default=str), status=status,
                    mimetype="application/json")


class SandboxApp:
    def __init__(self, settings, store):
        self.settings = settings
        self.store = store
        self._build()

    def _build(self):
        settings = self.settings
        self.vnpay = SandboxVnpay(settings, self.store)
        self.momo = SandboxMomo(settings, self.store)
        self.esms = SandboxEsms(settings, self.store)
        self.speedsms = SandboxSpeedSms(settings, self.store)
        self.national_portal = SandboxNationalPortal(settings)
        self.urls = Map([
            Rule("/", endpoint=self.outbox_html, methods=["GET"]),
            Rule("/outbox", endpoint=self.outbox_html, methods=["GET"]),
            Rule("/outbox.json", endpoint=self.outbox_json, methods=["GET"]),
            Rule("/payments.json", endpoint=self.payments_json, methods=["GET"]),
            Rule("/healthz", endpoint=self.healthz, methods=["GET"]),
            Rule("/_sandbox/reset", endpoint=self.reset, methods=["POST"]),
            Rule("/_sandbox/faults", endpoint=self.faults, methods=["GET", "POST", "DELETE"]),
            Rule(settings.vnpay_payment_path, endpoint=self.vnpay.pay_page, methods=["GET"]),
            Rule("/vnpay/checkout/<txn_ref>", endpoint=self.vnpay.checkout, methods=["GET", "POST"]),
            Rule(settings.vnpay_api_path, endpoint=self.vnpay.app, methods=["POST"]),
            Rule(CREATE_PATH, endpoint=self.momo.app, methods=["POST"]),
            Rule(QUERY_PATH, endpoint=self.momo.app, methods=["POST"]),
            Rule(REFUND_PATH, endpoint=self.momo.app, methods=["POST"]),
            Rule("/momo/pay", endpoint=self.momo.pay_page, methods=["GET"]),
            Rule("/momo/pay/<order_id>", endpoint=self.momo.checkout, methods=["GET", "POST"]),
            Rule(ESMS_PATH, endpoint=self.esms.app, methods=["POST"]),
            Rule(SPEEDSMS_PATH, endpoint=self.speedsms.app, methods=["POST"]),
            Rule(settings.national_portal_auth_path, endpoint=self.national_portal.app, methods=["POST"]),
            Rule(settings.national_portal_integration_path, endpoint=self.national_portal.app, methods=["POST"]),
            Rule("/national-portal.json", endpoint=self.national_portal_json, methods=["GET"]),
            Rule("/_sandbox/national-portal/faults", endpoint=self.national_portal_faults, methods=["POST"]),
        ])

    def outbox_html(self, request):
        return Response(pages.outbox_page(self.store.outbox(), self.national_portal.state()), mimetype="text/html")

    def national_portal_json(self, request):
        """What the fake national portal holds: dossiers, progress per dossier, calls, refusals, format errors."""
        return json_response(self.national_portal.state())

    def national_portal_faults(self, request):
        body = request.get_json(force=True, silent=True)
        error = self.national_portal.fault(body if isinstance(body, dict) else {})
        return json_response({"error": error}, 400) if error else json_response({"status": "ok"})

    def outbox_json(self, request):
        """Messages newest first; ``?channel=sms|email``, ``?to=``, ``?provider=``, ``?contains=`` filter,
        ``?after=ID`` gives only the messages newer than message ``ID`` (a poller asks for what is new)."""
        after = request.args.get("after")
        if after is not None and not after.isdigit():
            return json_response({"error": "after must be a message id (a whole number)"}, 400)
        messages = self.store.outbox(channel=request.args.get("channel") or None,
                                     after=int(after) if after is not None else None)
        for name in ("to", "provider"):
            if request.args.get(name):
                messages = [m for m in messages if m[name] == request.args[name]]
        if request.args.get("contains"):
            needle = request.args["contains"]
            messages = [m for m in messages if needle in (m["text"] or "") or needle in (m["subject"] or "")]
        return json_response({"messages": messages})

    def payments_json(self, request):
        vnpay_orders, vnpay_refunds = self.vnpay.state()
        momo_orders, momo_refunds = self.momo.state()
        return json_response({"vnpay": vnpay_orders, "momo": momo_orders, "refunds": vnpay_refunds + momo_refunds,
                              "callbacks": self.store.callbacks_newest_first()})

    def healthz(self, request):
        return json_response({"status": "ok"})

    def reset(self, request):
        self.store.reset()
        self._build()
        return json_response({"status": "reset"})

    def faults(self, request):
        """``POST {"provider": "esms"|"speedsms"|"smtp", "code": "99", "times": 2}``; times -1 = until DELETE.

        eSMS/SpeedSMS codes are provider codes, ``http_<status>`` or ``timeout`` (no answer for
        ``SANDBOX_HANG_SECONDS``, the SMS fakes' script); SMTP codes are reply codes such as 451 or 554.
        """
        if request.method == "POST":
            body = request.get_json(force=True, silent=True) or {}
            provider, code, times = body.get("provider"), body.get("code"), int(body.get("times", 1))
            if provider not in ("esms", "speedsms", "smtp") or not code:
                return json_response({"error": "provider (esms|speedsms|smtp) and code required"}, 400)
            if provider == "smtp":
                self.store.faults.plan("smtp", code, times)
            else:
                fake = self.esms if provider == "esms" else self.speedsms
                fake.always(str(code)) if times < 0 else fake.script(*[str(code)] * times)
        elif request.method == "DELETE":
            self.store.faults.clear()
            for fake in (self.esms, self.speedsms):
                fake.accept_again()
        return json_response({"smtp": self.store.faults.snapshot(), "esms": self.esms.scripted(),
                              "speedsms": self.speedsms.scripted()})

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
