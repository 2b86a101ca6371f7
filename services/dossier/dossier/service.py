"""Nameko entrypoints of the dossier service: validate, build a command, hand it to the bus, dump."""
from nameko.exceptions import RemoteError

from dossier import permissions, use_cases
from dossier.commands import ActOnDossier, ActOnDossiers, RecordPayment, SubmitDossier
from dossier.domain.model import InvalidTransition
from dossier.messagebus import MessageBus
from dossier.orm import Base  # noqa: F401  (tables known to Alembic autogenerate)
from dossier.providers import ProcedureCatalogue, WorkingCalendar
from dossier.schemas import (
    ActOnDossierSchema,
    DossierCodeSchema,
    DossierCodesSchema,
    ListDossiersSchema,
    PaymentSucceededSchema,
    StatsSchema,
    SubmitDossierSchema,
    dump_dossier,
)
from dossier.unit_of_work import SqlUnitOfWork
from dossier.use_cases import DossierNotFound, UnknownProcedure
from portal_shared.errors import Forbidden, Unauthorized, ValidationError, load
from portal_shared.extensions.auth import CallerIdentity, ServiceRpcProxy
from portal_shared.extensions.database import Database
from portal_shared.extensions.events import EventSignatures, ParkEvent, reliable_event_handler
from portal_shared.extensions.grouping import GroupCommits
from portal_shared.extensions.health import HealthEndpoints, Monitoring
from portal_shared.extensions.logs import WorkerLogContext
from portal_shared.extensions.rpc import rpc
from portal_shared.extensions.runtime import CpuWeight, StartupHeapFrozen

PAID_STATUSES = ("succeeded", "refund_pending", "refunded")  # refunds only ever follow a success
INBOX_CONSUMER = "dossier.on_payment_succeeded"
EXPECTED = (ValidationError, UnknownProcedure, DossierNotFound, InvalidTransition, Unauthorized, Forbidden)


class DossierService(HealthEndpoints):
    name = "dossier"

    log = WorkerLogContext()
    db = Database(migrations="dossier:migrations")
    monitoring = Monitoring()
    runtime = StartupHeapFrozen()  # no full collection walks the start-up heap (portal_shared.runtime)
    cpu = CpuWeight()  # CPU_NICE: its share of a CPU the stack shares (portal_shared.runtime)
    catalogue = ProcedureCatalogue()
    working_calendar = WorkingCalendar()  # holidays loaded before the first deadline is computed
    caller = CallerIdentity()
    payment_rpc = ServiceRpcProxy("payment")  # confirms unsigned payment events, with dossier's own service token
    payment_signatures = EventSignatures("PAYMENT_EVENT_KEY")  # signed payment events need no confirming call
    # calls acting on different dossiers at once share one transaction (portal_shared.extensions.grouping)
    actions = GroupCommits.of_commands(MessageBus, ActOnDossiers)

    @rpc(expected_exceptions=EXPECTED)
    def submit_dossier(self, procedure_code, applicant, form_data=None):
        caller = self.caller.require()
        request = load(SubmitDossierSchema,
                       {"procedure_code": procedure_code, "applicant": applicant, "form_data": form_data})
        dossier = self._bus().handle(SubmitDossier(**request, caller=caller))
        self.log.info("dossier_submitted", dossier_code=dossier.code, procedure_code=dossier.procedure.code,
                      applicant={key: request["applicant"][key] for key in ("id_number", "phone", "email")})
        return dump_dossier(dossier)

    @rpc(expected_exceptions=EXPECTED)
    def get_dossier(self, code):
        caller = self.caller.require()
        request = load(DossierCodeSchema, {"code": code})
        return dump_dossier(use_cases.get_dossier(self._uow(), request["code"], caller=caller))

    @rpc(expected_exceptions=EXPECTED)
    def get_dossiers(self, codes):
        """Internal, between services only (role ``service``), and not in the interface reference: up to 100
        dossiers in one call, for a service reading many at once (portal_sync's delivery batches), where a
        ``get_dossier`` each costs a round trip, a worker and a token check per dossier.
        ``{"dossiers": [as get_dossier], "missing": [codes]}``; a code given twice is answered once."""
        self.caller.require("service")
        request = load(DossierCodesSchema, {"codes": codes})
        dossiers, missing = use_cases.get_dossiers(self._uow(), request["codes"])
        return {"dossiers": [dump_dossier(dossier) for dossier in dossiers], "missing": missing}

    @rpc(expected_exceptions=EXPECTED)
    def list_dossiers(self, applicant_id_number=None, status=None, agency_code=None, limit=50, offset=0):
        caller = self.caller.require()
        request = load(ListDossiersSchema, {
            "applicant_id_number": applicant_id_number, "status": status, "agency_code": agency_code,
            "limit": limit, "offset": offset,
        })
        dossiers, total = use_cases.list_dossiers(self._uow(), permissions.list_scope(caller, request))
        return {"items": [dump_dossier(d) for d in dossiers], "total": total}

    @rpc(expected_exceptions=EXPECTED)
    def act_on_dossier(self, code, action, actor, note=None):
        caller = self.caller.require()
        request = load(ActOnDossierSchema, {"code": code, "action": action, "actor": actor, "note": note})
        dossier = self.actions.run(ActOnDossier(**request, caller=caller), self._uow())
        self.log.info("dossier_transition", dossier_code=code, action=action, status=dossier.status.value,
                      actor=caller.subject, display_name=request["actor"])
        return dump_dossier(dossier)

    @rpc(expected_exceptions=EXPECTED)
    def dossier_stats(self, agency_code=None, since=None, until=None):
        caller = self.caller.require()
        request = load(StatsSchema, {"agency_code": agency_code, "since": since, "until": until})
        return use_cases.dossier_stats(self._uow(), permissions.stats_scope(caller, request))

    @reliable_event_handler("payment", "payment_succeeded")
    def on_payment_succeeded(self, payload):
        signed = self.payment_signatures.verified("payment_succeeded", payload)
        event = load(PaymentSucceededSchema, payload)
        if not signed:
            if self.payment_signatures.present:
                self.log.warning("payment_event_signature_invalid", txn_ref=event.get("txn_ref"),
                                 dossier_code=event["dossier_code"], reason="confirming with payment instead")
            self._confirm_payment(event)
        dossier = self._bus().handle(RecordPayment(INBOX_CONSUMER, event["event_id"], event["dossier_code"]))
        self.log.info("payment_recorded", dossier_code=event["dossier_code"], duplicate=dossier is None,
                      status=dossier.status.value if dossier else None,
                      confirmed_by="signature" if signed else "rpc")

    def _uow(self):
        return SqlUnitOfWork(self.db, self.log.call_id_stack)

    def _bus(self):
        return MessageBus(self._uow(), catalogue=self.catalogue)

    def _confirm_payment(self, event):
        """An unsigned (or wrongly signed) payment_succeeded is applied only when the payment service
        confirms it: the payment exists, succeeded (possibly refunded since), for this dossier and this
        amount. Anything else is parked in the dead-letter queue with the reason; an unreachable payment
        service is retried."""
        txn_ref = event.get("txn_ref")
        if not txn_ref:
            raise ParkEvent("payment_succeeded without txn_ref: cannot be confirmed")
        try:
            payment = self.payment_rpc.get_payment(txn_ref)
        except RemoteError as exc:
            if exc.exc_type in ("PaymentNotFound", "ValidationError"):
                raise ParkEvent(f"payment_succeeded not confirmed: payment {txn_ref} is unknown to the payment "
                                "service") from None
            raise
        problems = []
        if payment.get("status") not in PAID_STATUSES:
            problems.append(f"its status is {payment.get('status')}")
        if payment.get("dossier_code") != event["dossier_code"]:
            problems.append("it belongs to another dossier")
        if event.get("amount") is not None and payment.get("amount") != event["amount"]:
            problems.append(f"its amount is {payment.get('amount')}, not {event['amount']}")
        if problems:
            self.log.warning("payment_event_unconfirmed", txn_ref=txn_ref, dossier_code=event["dossier_code"],
                             problems=problems)
            raise ParkEvent(f"payment_succeeded not confirmed by the payment service: {'; '.join(problems)}")
