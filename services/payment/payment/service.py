"""Nameko entrypoints of the payment service: validate, call one use case, dump."""
from werkzeug.wrappers import Response

from payment import permissions, use_cases
from payment.commands import (
    AcceptMomoIpn,
    AcceptVnpayIpn,
    LearnCharge,
    RecordDossierStatus,
    RefundPayment,
    SettlePending,
    StartPayment,
)
from payment.domain.model import AlreadyPaid, NoPaymentDue, PaymentNotFound
from payment.gateways import GatewayUnavailable
from payment.gateways.provider import Gateways
from payment.messagebus import MessageBus
from payment.reconciliation import reconcile_text
from payment.reconciliation.confirm import gateway_confirmer
from payment.refunds import BackgroundRefunds
from payment.schemas import (
    DossierCodeSchema,
    DossierStatusChangedSchema,
    ReconcileSchema,
    StartPaymentSchema,
    TxnRefSchema,
    dump_payment,
)
from payment.unit_of_work import SqlUnitOfWork
from portal_shared.errors import Forbidden, Unauthorized, ValidationError, load
from portal_shared.extensions import health  # module import: `nameko run payment.service` must find only PaymentService
from portal_shared.extensions.auth import CallerIdentity, ServiceRpcProxy
from portal_shared.extensions.database import Database
from portal_shared.extensions.events import reliable_event_handler
from portal_shared.extensions.health import Monitoring, json_response
from portal_shared.extensions.logs import WorkerLogContext
from portal_shared.extensions.rpc import rpc
from portal_shared.extensions.runtime import CpuWeight, StartupHeapFrozen
from portal_shared.extensions.timer import config_timer
from portal_shared.extensions.web import callback
from portal_shared.untrusted import Malformed, json_object, query_fields

EXPECTED = (ValidationError, NoPaymentDue, AlreadyPaid, GatewayUnavailable, PaymentNotFound, Unauthorized,
            Forbidden)
INBOX_CONSUMER = "payment.on_dossier_status_changed"


class PaymentService(health.HealthEndpoints):
    name = "payment"

    log = WorkerLogContext()
    db = Database(migrations="payment:migrations")
    monitoring = Monitoring()
    runtime = StartupHeapFrozen()  # no full collection walks the start-up heap (portal_shared.runtime)
    cpu = CpuWeight()  # CPU_NICE: its share of a CPU the stack shares (portal_shared.runtime)
    settings = Gateways()
    caller = CallerIdentity()
    dossier_rpc = ServiceRpcProxy("dossier")
    refunds = BackgroundRefunds()

    @rpc(expected_exceptions=EXPECTED)
    def start_payment(self, dossier_code, gateway, return_url, client_ip, bank_code=None, locale="vn"):
        caller = self.caller.require("citizen", "officer")
        request = load(StartPaymentSchema, {
            "dossier_code": dossier_code, "gateway": gateway, "return_url": return_url, "client_ip": client_ip,
            "bank_code": bank_code, "locale": locale,
        })
        permissions.check_dossier_access(caller, self.db, self.dossier_rpc.get_dossier, request["dossier_code"],
                                         learn_charge=ChargeFromDossier(self._bus, self.log))
        payment = self._bus().handle(StartPayment(**request))
        self.log.info("payment_started", txn_ref=payment.txn_ref, dossier_code=dossier_code, gateway=gateway,
                      amount=payment.amount)
        return dump_payment(payment)

    @rpc(expected_exceptions=EXPECTED)
    def get_payment(self, txn_ref):
        caller = self.caller.require("citizen", "officer", "finance", "service")
        request = load(TxnRefSchema, {"txn_ref": txn_ref})
        payment = use_cases.get_payment(self._uow(), request["txn_ref"])
        self._check_dossier(caller, payment.dossier_code, readers=("finance", "service"))
        return dump_payment(payment)

    @rpc(expected_exceptions=EXPECTED)
    def list_payments(self, dossier_code):
        caller = self.caller.require("citizen", "officer", "finance")
        request = load(DossierCodeSchema, {"dossier_code": dossier_code})
        self._check_dossier(caller, request["dossier_code"], readers=("finance",))
        return [dump_payment(row) for row in use_cases.list_payments(self._uow(), request["dossier_code"])]

    @rpc(expected_exceptions=EXPECTED)
    def reconcile(self, gateway, settlement_csv):
        self.caller.require("finance")
        request = load(ReconcileSchema, {"gateway": gateway, "settlement_csv": settlement_csv})
        return reconcile_text(self.db, request["gateway"], request["settlement_csv"],
                              confirm=gateway_confirmer(self.settings), call_id_stack=self.log.call_id_stack)

    @reliable_event_handler("dossier", "dossier_status_changed")
    def on_dossier_status_changed(self, payload):
        event = load(DossierStatusChangedSchema, payload)
        to_refund = []
        self._bus(request_refund=to_refund.append).handle(RecordDossierStatus(INBOX_CONSUMER, event))
        self._refund(to_refund)

    @callback("GET", "/callbacks/vnpay/ipn")
    def vnpay_ipn(self, request):
        """VNPay IPN: HTTP 200 with ``{"RspCode", "Message"}``; 400 only for a request no VNPay would send."""
        try:
            params = query_fields(request.query_string)
        except Malformed as exc:
            self.log.warning("vnpay_ipn_malformed", reason=str(exc))
            return json_response({"RspCode": "99", "Message": "Invalid request"}, status=400)
        try:
            # a refund it asks for is sent in the background: VNPay never waits for a gateway call
            verdict = self._bus(request_refund=self.refunds).handle(AcceptVnpayIpn(params))
        except Exception:
            # VNPay retries on 99; never a 500 for what it sends
            self.log.exception("vnpay_ipn_failed", txn_ref=params.get("vnp_TxnRef"))
            return json_response({"RspCode": "99", "Message": "Unknown error"})
        self.log.info("vnpay_ipn", txn_ref=params.get("vnp_TxnRef"), rsp_code=verdict.code,
                      vnp_response_code=params.get("vnp_ResponseCode"))
        return json_response({"RspCode": verdict.code, "Message": verdict.message})

    @callback("POST", "/callbacks/momo/ipn")
    def momo_ipn(self, request):
        """MoMo IPN: 204 when accepted (also a duplicate), 400 for a bad signature or a malformed body."""
        try:
            body = json_object(request.get_data(cache=False))
        except Malformed as exc:
            self.log.warning("momo_ipn_rejected", order_id=None, reason=str(exc))
            return json_response({"message": "rejected: malformed body"}, status=400)
        try:
            # a refund it asks for is sent in the background: MoMo never waits for a gateway call
            self._bus(request_refund=self.refunds).handle(AcceptMomoIpn(body))
        except use_cases.RejectedNotification as exc:
            self.log.warning("momo_ipn_rejected", order_id=str(body.get("orderId"))[:64], reason=str(exc))
            return json_response({"message": "rejected"}, status=400)
        except Exception:
            self.log.exception("momo_ipn_failed")
            return json_response({"message": "temporary error"}, status=503)
        self.log.info("momo_ipn", order_id=body.get("orderId"), result_code=body.get("resultCode"))
        return Response(status=204)

    @config_timer(interval=300, config_key="PAYMENT_PENDING_CHECK_SECONDS")
    def check_pending(self):
        to_refund = []
        self._bus(request_refund=to_refund.append).handle(SettlePending())
        self._refund(to_refund + use_cases.refunds_due(self._uow()))

    def _uow(self):
        return SqlUnitOfWork(self.db, self.log.call_id_stack)

    def _bus(self, request_refund=None):
        return MessageBus(self._uow(), self.settings, request_refund)

    def _check_dossier(self, caller, dossier_code, readers=()):
        permissions.check_dossier_access(caller, self.db, self.dossier_rpc.get_dossier, dossier_code, readers)

    def _refund(self, txn_refs):
        """Refunds are tried at once; a refusal or an outage is retried by ``check_pending``."""
        for txn_ref in dict.fromkeys(txn_refs):
            try:
                refunded = self._bus().handle(RefundPayment(txn_ref))
                self.log.info("refund_attempted", txn_ref=txn_ref, refunded=refunded)
            except Exception:
                self.log.exception("refund_failed", txn_ref=txn_ref)


class ChargeFromDossier:
    """A ``start_payment`` ahead of dossier's ``payment_requested`` event: the dossier service's answer
    says the fee is due, so payment records the charge now instead of answering ``NoPaymentDue``."""

    def __init__(self, bus, log):
        self.bus, self.log = bus, log

    @staticmethod
    def due(dossier):
        fee = dossier.get("fee_amount")
        return (dossier.get("status") == "payment_requested" and not dossier.get("fee_paid")
                and isinstance(fee, int) and fee > 0)

    def record(self, dossier):
        self.bus().handle(LearnCharge(dossier["code"], dossier["fee_amount"], dossier.get("procedure_name"),
                                      dossier.get("agency_code")))
        self.log.info("charge_learned", dossier_code=dossier["code"], amount=dossier["fee_amount"])
