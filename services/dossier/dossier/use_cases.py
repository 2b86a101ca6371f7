"""Use cases of the dossier service: plain functions over a unit of work.

Each takes validated input, loads the aggregate, lets the domain decide, saves
it and records one ``dossier_status_changed`` per status change in the outbox,
all in one transaction.
"""
import secrets

from dossier import permissions
from dossier.domain.model import Applicant, Dossier, Status, on_time_rate
from dossier.orm import DossierRepository, dossier_statistics
from portal_shared.outbox import new_event, record_event
from portal_shared.timeutil import isoformat, to_vn, utcnow

EVENT_TYPE = "dossier_status_changed"
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


class UnknownProcedure(Exception):
    pass


class DossierNotFound(Exception):
    pass


def new_dossier_code(agency_code, now):
    """Human-readable and unique: agency, Vietnam date, six random characters."""
    suffix = "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))
    return f"{agency_code}-{to_vn(now):%y%m%d}-{suffix}"


def _publish_changes(session, dossier, call_id_stack):
    for change in dossier.events:
        payload = new_event(
            dossier_code=dossier.code,
            procedure_code=dossier.procedure.code,
            procedure_name=dossier.procedure.name,
            agency_code=dossier.procedure.agency_code,
            old_status=change.old_status.value if change.old_status else None,
            new_status=change.new_status.value,
            status_code=change.new_status.code,
            fee_amount=dossier.procedure.fee,
            due_at=isoformat(dossier.due_at),
            applicant=dossier.applicant.contact(),
            note=change.note,
        )
        payload["occurred_at"] = isoformat(change.at)
        record_event(session, EVENT_TYPE, payload, aggregate_key=dossier.code, call_id_stack=call_id_stack)
    dossier.events.clear()


def submit_dossier(uow, catalogue, request, call_id_stack=None, now=None, caller=None):
    """``caller``: the verified ``Caller``; checked against the procedure before anything is stored."""
    procedure = catalogue.get(request["procedure_code"])
    if procedure is None:
        raise UnknownProcedure(f"unknown procedure_code {request['procedure_code']!r}")
    actor = None
    if caller is not None:
        permissions.check_submit(caller, procedure, request["applicant"]["id_number"])
        actor = caller.subject
    now = now or utcnow()
    with uow.transaction() as session:
        repository = DossierRepository(session)
        code = new_dossier_code(procedure.agency_code, now)
        while repository.code_exists(code):
            code = new_dossier_code(procedure.agency_code, now)
        dossier = Dossier.submit(code, procedure, Applicant(**request["applicant"]), request["form_data"], now,
                                 actor=actor)
        repository.add(dossier)
        _publish_changes(session, dossier, call_id_stack)
    return dossier


def get_dossier(uow, code, caller=None):
    with uow.read() as session:
        dossier, _ = DossierRepository(session).get(code)
    if dossier is None:
        raise DossierNotFound(f"no dossier {code!r}")
    if caller is not None:
        permissions.check_read(caller, dossier)
    return dossier


def act_on_dossier(uow, request, call_id_stack=None, now=None, caller=None):
    """The history's actor is the verified caller's subject; ``request["actor"]`` is only a display name."""
    now = now or utcnow()
    with uow.transaction() as session:
        repository = DossierRepository(session)
        dossier, row = repository.get(request["code"], for_update=True)
        if dossier is None:
            raise DossierNotFound(f"no dossier {request['code']!r}")
        actor = request["actor"]
        if caller is not None:
            permissions.check_act(caller, dossier, request["action"])
            actor = caller.subject
        dossier.act(request["action"], actor, request["note"], now)
        repository.save(dossier, row)
        _publish_changes(session, dossier, call_id_stack)
    return dossier


def record_payment(uow, inbox_consumer, event, call_id_stack=None, now=None):
    """``payment_succeeded``: move the dossier on, once per event. Returns the dossier or None."""
    from portal_shared.inbox import claim_event

    now = now or utcnow()
    with uow.transaction() as session:
        if not claim_event(session, inbox_consumer, event["event_id"]):
            return None
        repository = DossierRepository(session)
        dossier, row = repository.get(event["dossier_code"], for_update=True)
        if dossier is None:
            raise DossierNotFound(f"payment for unknown dossier {event['dossier_code']!r}")
        dossier.record_payment(now)
        repository.save(dossier, row)
        _publish_changes(session, dossier, call_id_stack)
    return dossier


def list_dossiers(uow, request):
    with uow.read() as session:
        dossiers, total = DossierRepository(session).list(**request)
    return dossiers, total


def dossier_stats(uow, request, now=None):
    now = now or utcnow()
    with uow.read() as session:
        by_status, on_time, late, overdue_open = dossier_statistics(session, now, **request)
    return {
        "by_status": {status.value: by_status.get(status.value, 0) for status in Status},
        "finished": on_time + late,
        "on_time": on_time,
        "late": late,
        "on_time_rate": on_time_rate(on_time, late, overdue_open),
        "overdue_open": overdue_open,
    }
