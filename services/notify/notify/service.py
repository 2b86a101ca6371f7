"""Nameko entrypoints of the notify service: validate, call one use case, dump."""
import hmac

from nameko.dependency_providers import Config
from nameko.exceptions import RemoteError

from notify import use_cases
from notify.commands import (
    ApplySmsReceipt,
    NotifyDossierStatusChanged,
    NotifyDossierStatusChanges,
    NotifyPaymentEvent,
    PruneBodies,
    QueueDueNotifications,
    SendNotification,
)
from notify.dependencies import DeliverySettings
from notify.domain.model import PAYMENT_EVENT_KINDS
from notify.messagebus import MessageBus
from notify.orm import Base  # noqa: F401  (tables known to Alembic autogenerate)
from notify.pipeline import DeliveryPipeline
from notify.rendering import TemplateParamsError
from notify.schemas import DossierStatusChangedSchema, PaymentEventSchema, ReferenceSchema, SendNotificationSchema
from notify.sms import status_from_esms_receipt
from notify.unit_of_work import SqlUnitOfWork
from notify.use_cases import NotificationNotFound, dump_notification
from portal_shared.config import get_str
from portal_shared.errors import Forbidden, Unauthorized, ValidationError, load
from portal_shared.extensions import health  # module import: `nameko run notify.service` must find only NotifyService
from portal_shared.extensions.auth import CallerIdentity, ServiceRpcProxy
from portal_shared.extensions.database import Database
from portal_shared.extensions.events import reliable_event_handler
from portal_shared.extensions.grouping import GroupCommits
from portal_shared.extensions.health import Monitoring, json_response
from portal_shared.extensions.logs import WorkerLogContext
from portal_shared.extensions.rpc import rpc
from portal_shared.extensions.runtime import CpuWeight, StartupHeapFrozen
from portal_shared.extensions.timer import config_timer
from portal_shared.extensions.web import callback
from portal_shared.untrusted import Malformed, json_object, query_fields

EXPECTED = (ValidationError, NotificationNotFound, Unauthorized, Forbidden)


class NotifyService(health.HealthEndpoints):
    name = "notify"

    log = WorkerLogContext()
    # the relay publishes the delivery messages the use cases write to the outbox
    db = Database(migrations="notify:migrations", relay_events=True)
    monitoring = Monitoring()
    runtime = StartupHeapFrozen()  # no full collection walks the start-up heap (portal_shared.runtime)
    cpu = CpuWeight()  # CPU_NICE: its share of a CPU the stack shares (portal_shared.runtime)
    settings = DeliverySettings()
    delivery = DeliveryPipeline()  # per-channel queue consumers, outside the worker pool (notify.pipeline)
    dossier_rpc = ServiceRpcProxy("dossier")  # calls carry notify's own service token
    caller = CallerIdentity()
    config = Config()
    # dossier events that arrive together are stored together: one transaction (portal_shared.extensions.grouping)
    status_changes = GroupCommits.of_commands(MessageBus, NotifyDossierStatusChanges)

    @rpc(expected_exceptions=EXPECTED)
    def send_notification(self, channel, recipient, template, params=None, reference=None):
        self.caller.require("operator")
        request = load(SendNotificationSchema, {
            "channel": channel, "recipient": recipient, "template": template, "params": params, "reference": reference,
        })
        try:
            notification = self._bus().handle(SendNotification(**request))
        except TemplateParamsError as exc:
            raise ValidationError({"params": exc.fields}) from None
        self.log.info("notification_requested", notification_id=notification.id, channel=notification.channel,
                      template=notification.template, reference=notification.reference)
        # queued for its channel in the same transaction; delivered by the pipeline, not by this worker
        return dump_notification(notification)

    @rpc(expected_exceptions=EXPECTED)
    def get_notifications(self, reference):
        caller = self.caller.require("operator", "officer")
        request = load(ReferenceSchema, {"reference": reference})
        if not caller.has("operator"):
            self._check_officer_agency(caller, request["reference"])
        return [dump_notification(notification)
                for notification in use_cases.list_notifications(self._uow(), request["reference"])]

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
        event = load(DossierStatusChangedSchema, payload)
        command = NotifyDossierStatusChanged("notify.on_dossier_status_changed", event)
        ids = self.status_changes.run(command, self._uow())
        self._after_event("dossier_status_changed", event, ids)

    @reliable_event_handler("payment", "payment_succeeded")
    def on_payment_succeeded(self, payload):
        self._payment_event("payment_succeeded", payload)

    @reliable_event_handler("payment", "payment_refunded")
    def on_payment_refunded(self, payload):
        self._payment_event("payment_refunded", payload)

    def _payment_event(self, event_type, payload):
        event = load(PaymentEventSchema, payload)
        command = NotifyPaymentEvent(f"notify.on_{event_type}", PAYMENT_EVENT_KINDS[event_type], event)
        ids = self._bus(find_dossier=self.dossier_rpc.get_dossier).handle(command)
        self._after_event(event_type, event, ids)

    def _after_event(self, event_type, event, ids):
        # the notifications and their delivery messages are committed; the pipeline sends them
        self.log.info("event_notifications", event_type=event_type, event_id=event["event_id"],
                      dossier_code=event["dossier_code"], duplicate=ids is None, created=len(ids or []))

    @config_timer(interval=5, config_key="NOTIFY_RETRY_TICK_SECONDS")
    def send_due(self):
        """Queue due retries, resends and rows whose lease ran out (the safety net; sends nothing itself)."""
        self._bus().handle(QueueDueNotifications())

    @config_timer(interval=3600, config_key="NOTIFY_BODY_PRUNE_SECONDS")
    def prune_old_bodies(self):
        """Texts of delivered messages older than NOTIFY_BODY_RETENTION_DAYS (default 90) are blanked."""
        days = float(self.config.get("NOTIFY_BODY_RETENTION_DAYS") or 90)
        pruned = self._bus().handle(PruneBodies(days))
        if pruned:
            self.log.info("notification_bodies_pruned", rows=pruned, retention_days=days)

    @callback("POST", "/callbacks/esms/<token>")
    def esms_receipt(self, request, token):
        """eSMS delivery receipt (CONTRACT section 5): the path carries ESMS_CALLBACK_TOKEN; JSON or form body.

        Known and unknown messages get the same answer, so the endpoint tells
        nobody which ids exist; only a receipt naming the SMSID eSMS gave us
        for a message still in flight changes anything.
        """
        expected = get_str(self.config, "ESMS_CALLBACK_TOKEN")
        if not expected or not hmac.compare_digest(expected.encode("utf-8"), token.encode("utf-8", "surrogateescape")):
            self.log.warning("esms_receipt_refused", reason="wrong or missing path token")
            return json_response({"error": "not found"}, 404)
        try:
            receipt = _receipt_fields(request)
        except Malformed as exc:
            self.log.warning("esms_receipt_malformed", reason=str(exc))
            return json_response({"error": f"malformed receipt: {exc}"}, 400)
        status = status_from_esms_receipt(receipt["SendStatus"], receipt.get("SendFailed"), receipt.get("SendSuccess"))
        applied = self._bus().handle(ApplySmsReceipt("esms", receipt["SMSID"], status, receipt.get("RequestId")))
        self.log.info("esms_receipt", notification_id=applied.notification_id if applied else None,
                      send_status=receipt["SendStatus"], applied=applied is not None and not applied.kept_for_outcome,
                      kept_for_outcome=bool(applied and applied.kept_for_outcome),
                      status=applied.status if applied else None)
        return json_response({"status": "received"})

    def _uow(self):
        return SqlUnitOfWork(self.db)

    def _bus(self, find_dossier=None):
        return MessageBus(self._uow(), settings=self.settings, find_dossier=find_dossier)


RECEIPT_FIELDS = {"SMSID": 64, "RequestId": 64, "SendStatus": 4, "SendSuccess": 8, "SendFailed": 8}


def _receipt_fields(request):
    """The receipt's fields as text; raises ``Malformed`` (a 400)."""
    if request.query_string:
        raise Malformed("receipts come in the body, not the query string")
    if request.mimetype == "application/json":
        data = json_object(request.get_data(cache=True))
    elif request.mimetype == "application/x-www-form-urlencoded":
        data = query_fields(request.get_data(cache=True), "form body")
    else:
        raise Malformed("the body must be JSON or a form")
    receipt = {}
    for name, longest in RECEIPT_FIELDS.items():
        value = data.get(name)
        if value is None or isinstance(value, bool) or value == "":
            continue
        text = str(value) if isinstance(value, (int, str)) else None
        if text is None or len(text) > longest:
            raise Malformed(f"{name} is not a short text or integer")
        receipt[name] = text
    for name in ("SMSID", "SendStatus"):
        if name not in receipt:
            raise Malformed(f"{name} is missing")
    if not receipt["SendStatus"].isdigit():
        raise Malformed("SendStatus is not a number")
    return receipt
