"""Nameko entrypoints of the notify service: validate, call one use case, dump."""
import json

from nameko.dependency_providers import Config
from nameko.exceptions import RemoteError
from nameko.web.handlers import http

from notify import retention, use_cases
from notify.dependencies import DeliverySettings, config_timer
from notify.domain.model import PAYMENT_EVENT_KINDS, status_from_esms_receipt
from notify.orm import Base  # noqa: F401  (tables known to Alembic autogenerate)
from notify.pipeline import DeliveryPipeline
from notify.rendering import TemplateParamsError
from notify.schemas import DossierStatusChangedSchema, PaymentEventSchema, ReferenceSchema, SendNotificationSchema
from notify.use_cases import NotificationNotFound, dump_notification
from portal_shared.auth import CallerIdentity, ServiceRpcProxy
from portal_shared.db import Database
from portal_shared.errors import Forbidden, Unauthorized, ValidationError, load
from portal_shared.events import reliable_event_handler
from portal_shared import health  # module import: `nameko run notify.service` must find only NotifyService
from portal_shared.health import Monitoring, json_response
from portal_shared.logs import WorkerLogContext
from portal_shared.rpc import rpc

EXPECTED = (ValidationError, NotificationNotFound, Unauthorized, Forbidden)


class NotifyService(health.HealthEndpoints):
    name = "notify"

    log = WorkerLogContext()
    # the relay publishes the delivery messages the use cases write to the outbox
    db = Database(migrations="notify:migrations", relay_events=True)
    monitoring = Monitoring()
    settings = DeliverySettings()
    delivery = DeliveryPipeline()  # per-channel queue consumers, outside the worker pool (notify.pipeline)
    dossier_rpc = ServiceRpcProxy("dossier")  # calls carry notify's own service token
    caller = CallerIdentity()
    container_config = Config()

    @rpc(expected_exceptions=EXPECTED)
    def send_notification(self, channel, recipient, template, params=None, reference=None):
        self.caller.require("operator")
        request = load(SendNotificationSchema(), {
            "channel": channel, "recipient": recipient, "template": template, "params": params, "reference": reference,
        })
        try:
            row = use_cases.create_notification(self.db, request)
        except TemplateParamsError as exc:
            raise ValidationError({"params": exc.fields}) from None
        self.log.info("notification_requested", notification_id=row.id, channel=row.channel, template=row.template,
                      reference=row.reference)
        # queued for its channel in the same transaction; delivered by the pipeline, not by this worker
        return dump_notification(row)

    @rpc(expected_exceptions=EXPECTED)
    def get_notifications(self, reference):
        caller = self.caller.require("operator", "officer")
        request = load(ReferenceSchema(), {"reference": reference})
        if not caller.has("operator"):
            self._check_officer_agency(caller, request["reference"])
        return [dump_notification(row) for row in use_cases.list_notifications(self.db, request["reference"])]

    def _check_officer_agency(self, caller, dossier_code):
        """An officer reads the notifications of dossiers of their agencies (asked of the dossier service)."""
        try:
            dossier = self.dossier_rpc.get_dossier(dossier_code)
        except RemoteError as exc:
            if exc.exc_type in ("DossierNotFound", "ValidationError"):
                raise Forbidden("no dossier of an agency the caller serves has this reference") from None
            raise
        if not caller.serves(dossier.get("agency_code")):
            raise Forbidden(f"the caller does not serve agency {dossier.get('agency_code')}")

    @reliable_event_handler("dossier", "dossier_status_changed")
    def on_dossier_status_changed(self, payload):
        event = load(DossierStatusChangedSchema(), payload)
        ids = use_cases.notify_dossier_status_changed(self.db, "notify.on_dossier_status_changed", event)
        self._after_event("dossier_status_changed", event, ids)

    @reliable_event_handler("payment", "payment_succeeded")
    def on_payment_succeeded(self, payload):
        self._payment_event("payment_succeeded", payload)

    @reliable_event_handler("payment", "payment_refunded")
    def on_payment_refunded(self, payload):
        self._payment_event("payment_refunded", payload)

    def _payment_event(self, event_type, payload):
        event = load(PaymentEventSchema(), payload)
        ids = use_cases.notify_payment_event(self.db, f"notify.on_{event_type}", PAYMENT_EVENT_KINDS[event_type],
                                             event, find_dossier=self.dossier_rpc.get_dossier)
        self._after_event(event_type, event, ids)

    def _after_event(self, event_type, event, ids):
        # the notifications and their delivery messages are committed; the pipeline sends them
        self.log.info("event_notifications", event_type=event_type, event_id=event["event_id"],
                      dossier_code=event["dossier_code"], duplicate=ids is None, created=len(ids or []))

    @config_timer(interval=5, config_key="NOTIFY_RETRY_TICK_SECONDS")
    def send_due(self):
        """Queue due retries, resends and rows whose lease ran out (the safety net; sends nothing itself)."""
        use_cases.enqueue_due(self.db, self.settings)

    @config_timer(interval=3600, config_key="NOTIFY_BODY_PRUNE_SECONDS")
    def prune_old_bodies(self):
        """Texts of delivered messages older than NOTIFY_BODY_RETENTION_DAYS (default 90) are blanked."""
        days = float(self.container_config.get("NOTIFY_BODY_RETENTION_DAYS") or 90)
        pruned = retention.prune_bodies(self.db, days)
        if pruned:
            self.log.info("notification_bodies_pruned", rows=pruned, retention_days=days)

    @http("POST", "/callbacks/esms")
    def esms_receipt(self, request):
        """eSMS delivery receipt: JSON or form body with RequestId / SMSID and SendStatus."""
        receipt = _receipt_fields(request)
        if receipt is None or not (receipt.get("RequestId") or receipt.get("SMSID")) or "SendStatus" not in receipt:
            return json_response({"error": "malformed receipt"}, 400)
        status = status_from_esms_receipt(receipt.get("SendStatus"), receipt.get("SendFailed"), receipt.get("SendSuccess"))
        row = use_cases.apply_esms_receipt(self.db, receipt.get("RequestId"), receipt.get("SMSID"), status)
        if row is None:
            return json_response({"error": "unknown message"}, 404)
        self.log.info("esms_receipt", notification_id=row.id, send_status=receipt.get("SendStatus"), status=row.status)
        return json_response({"status": row.status})


def _receipt_fields(request):
    body = request.get_data(cache=True, as_text=True) or ""
    if request.mimetype == "application/json" or body.lstrip().startswith("{"):
        try:
            data = json.loads(body)
        except ValueError:
            return None
        return {str(k): (str(v) if v is not None else None) for k, v in data.items()} if isinstance(data, dict) else None
    data = request.form.to_dict() or request.args.to_dict()
    return data or None
