"""Use cases of the dossier service: handlers ``(command, uow, ...)`` over the ``Dossier`` aggregate.

Each loads the aggregate through ``uow.dossiers`` (an action locks its row),
lets the domain decide and commits: the unit of work stores the dossier and,
through the bus, records one ``dossier_status_changed`` per status change in
the outbox, all in one transaction. Reads are plain functions over the unit of
work. No SQLAlchemy here: the repository holds the queries.
"""
import secrets

from dossier import permissions
from dossier.domain.model import Applicant, Dossier, InvalidTransition, Status, on_time_rate
from portal_shared.errors import Forbidden
from portal_shared.timeutil import to_vn, utcnow

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


class UnknownProcedure(Exception):
    pass


class DossierNotFound(Exception):
    pass


class DossierNamedTwice(Exception):
    """Two calls on one dossier in one group: run one by one instead (``act_on_dossiers``)."""


# what refuses one call of a group without touching anything: the others go on
REFUSALS = (DossierNotFound, InvalidTransition, Forbidden)


def new_dossier_code(agency_code, now):
    """Human-readable and unique: agency, Vietnam date, six random characters."""
    suffix = "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))
    return f"{agency_code}-{to_vn(now):%y%m%d}-{suffix}"


def submit_dossier(command, uow, catalogue):
    """A new dossier in ``submitted``; the caller's rights are checked before anything is stored."""
    procedure = catalogue.get(command.procedure_code)
    if procedure is None:
        raise UnknownProcedure(f"unknown procedure_code {command.procedure_code!r}")
    actor = None
    if command.caller is not None:
        permissions.check_submit(command.caller, procedure, command.applicant["id_number"])
        actor = command.caller.subject
    now = command.now or utcnow()
    applicant = Applicant(**command.applicant)
    with uow:
        while True:  # a code already taken (one in a billion a day) is drawn again
            dossier = Dossier.submit(new_dossier_code(procedure.agency_code, now), procedure, applicant,
                                     command.form_data, now, actor=actor)
            if uow.dossiers.add(dossier):
                break
        uow.commit()
    return dossier


def act_on_dossier(command, uow):
    """Apply a portal action; the history's actor is the verified caller's subject."""
    with uow:
        dossier = _act(command, uow.dossiers.get_for_update(command.code))
        uow.commit()
    return dossier


def act_on_dossiers(command, uow):
    """``act_on_dossier`` for several calls on different dossiers, in one transaction: the rows locked in one
    statement, their changes and outbox rows written together. Returns, per call, the dossier or the
    exception that refused it (nothing of a refused call is stored; the others are). Two calls on one
    dossier are not grouped: ``DossierNamedTwice`` makes the caller run them one by one, in order."""
    codes = [each.code for each in command.commands]
    if len(set(codes)) < len(codes):
        raise DossierNamedTwice("two calls on one dossier run one after the other")
    with uow:
        found = uow.dossiers.all_for_update(codes)
        results = []
        for each in command.commands:
            try:
                results.append(_act(each, found.get(each.code)))
            except REFUSALS as exc:
                results.append(exc)
        uow.commit()
    return results


def _act(command, dossier):
    if dossier is None:
        raise DossierNotFound(f"no dossier {command.code!r}")
    actor = command.actor
    if command.caller is not None:
        permissions.check_act(command.caller, dossier, command.action)
        actor = command.caller.subject
    dossier.act(command.action, actor, command.note, command.now or utcnow())
    return dossier


def record_payment(command, uow):
    """``payment_succeeded``: move the dossier on, once per event. Returns the dossier, or None for a duplicate.

    The returned dossier's history holds only the entry this payment added.
    """
    now = command.now or utcnow()
    with uow:
        if not uow.inbox.claim(command.consumer, command.event_id):
            return None
        dossier = uow.dossiers.get_for_update(command.dossier_code, with_history=False)
        if dossier is None:
            raise DossierNotFound(f"payment for unknown dossier {command.dossier_code!r}")
        dossier.record_payment(now)
        uow.commit()
    return dossier


# --- reads ----------------------------------------------------------------------------------


def get_dossier(uow, code, caller=None):
    with uow.autocommitting():  # one statement: no BEGIN / ROLLBACK round trips
        dossier = uow.dossiers.get(code)
    if dossier is None:
        raise DossierNotFound(f"no dossier {code!r}")
    if caller is not None:
        permissions.check_read(caller, dossier)
    return dossier


def get_dossiers(uow, codes):
    """``(dossiers, missing codes)`` of ``codes``, each code once, in the order first given: one statement
    for all. No permission check per dossier: only callers that may read every dossier (services) get here."""
    wanted = list(dict.fromkeys(codes))
    with uow.autocommitting():  # one statement, as get_dossier
        found = uow.dossiers.get_many(wanted)
    return [found[code] for code in wanted if code in found], [code for code in wanted if code not in found]


def list_dossiers(uow, request):
    """``(dossiers, total)`` for the filters of a (scoped) ``list_dossiers`` request."""
    with uow:
        return uow.dossiers.list(**request)


def dossier_stats(uow, request, now=None):
    now = now or utcnow()
    with uow:
        by_status, on_time, late, overdue_open = uow.dossiers.statistics(now, **request)
    return {
        "by_status": {status.value: by_status.get(status.value, 0) for status in Status},
        "finished": on_time + late,
        "on_time": on_time,
        "late": late,
        "on_time_rate": on_time_rate(on_time, late, overdue_open),
        "overdue_open": overdue_open,
    }
