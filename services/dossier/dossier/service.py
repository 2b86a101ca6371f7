"""Nameko entrypoints of the dossier service: validate, call one use case, dump."""
from dossier import permissions, use_cases
from dossier.domain.model import InvalidTransition
from dossier.orm import Base  # noqa: F401  (tables known to Alembic autogenerate)
from dossier.procedures import ProcedureCatalogue
from dossier.schemas import (
    ActOnDossierSchema,
    DossierCodeSchema,
    ListDossiersSchema,
    PaymentSucceededSchema,
    StatsSchema,
    SubmitDossierSchema,
    dump_dossier,
)
from dossier.use_cases import DossierNotFound, UnknownProcedure
from portal_shared.db import Database
from portal_shared.auth import CallerIdentity
from portal_shared.errors import Forbidden, Unauthorized, ValidationError, load
from portal_shared.events import reliable_event_handler
from portal_shared.health import HealthEndpoints, Monitoring
from portal_shared.logs import WorkerLogContext
from portal_shared.rpc import rpc

EXPECTED = (ValidationError, UnknownProcedure, DossierNotFound, InvalidTransition, Unauthorized, Forbidden)


class DossierService(HealthEndpoints):
    name = "dossier"

    log = WorkerLogContext()
    db = Database(migrations="dossier:migrations")
    monitoring = Monitoring()
    catalogue = ProcedureCatalogue()
    caller = CallerIdentity()

    @rpc(expected_exceptions=EXPECTED)
    def submit_dossier(self, procedure_code, applicant, form_data=None):
        caller = self.caller.require()
        request = load(
            SubmitDossierSchema(),
            {"procedure_code": procedure_code, "applicant": applicant, "form_data": form_data},
        )
        dossier = use_cases.submit_dossier(self.db, self.catalogue, request, self.log.call_id_stack, caller=caller)
        self.log.info("dossier_submitted", dossier_code=dossier.code, procedure_code=dossier.procedure.code,
                      applicant={key: request["applicant"][key] for key in ("id_number", "phone", "email")})
        return dump_dossier(dossier)

    @rpc(expected_exceptions=EXPECTED)
    def get_dossier(self, code):
        caller = self.caller.require()
        request = load(DossierCodeSchema(), {"code": code})
        return dump_dossier(use_cases.get_dossier(self.db, request["code"], caller=caller))

    @rpc(expected_exceptions=EXPECTED)
    def list_dossiers(self, applicant_id_number=None, status=None, agency_code=None, limit=50, offset=0):
        caller = self.caller.require()
        request = load(
            ListDossiersSchema(),
            {"applicant_id_number": applicant_id_number, "status": status, "agency_code": agency_code,
             "limit": limit, "offset": offset},
        )
        dossiers, total = use_cases.list_dossiers(self.db, permissions.list_scope(caller, request))
        return {"items": [dump_dossier(d) for d in dossiers], "total": total}

    @rpc(expected_exceptions=EXPECTED)
    def act_on_dossier(self, code, action, actor, note=None):
        caller = self.caller.require()
        request = load(ActOnDossierSchema(), {"code": code, "action": action, "actor": actor, "note": note})
        dossier = use_cases.act_on_dossier(self.db, request, self.log.call_id_stack, caller=caller)
        self.log.info("dossier_transition", dossier_code=code, action=action, status=dossier.status.value,
                      actor=caller.subject, display_name=request["actor"])
        return dump_dossier(dossier)

    @rpc(expected_exceptions=EXPECTED)
    def dossier_stats(self, agency_code=None, since=None, until=None):
        caller = self.caller.require()
        request = load(StatsSchema(), {"agency_code": agency_code, "since": since, "until": until})
        return use_cases.dossier_stats(self.db, permissions.stats_scope(caller, request))

    @reliable_event_handler("payment", "payment_succeeded")
    def on_payment_succeeded(self, payload):
        event = load(PaymentSucceededSchema(), payload)
        dossier = use_cases.record_payment(self.db, "dossier.on_payment_succeeded", event, self.log.call_id_stack)
        self.log.info("payment_recorded", dossier_code=event["dossier_code"], duplicate=dossier is None,
                      status=dossier.status.value if dossier else None)
