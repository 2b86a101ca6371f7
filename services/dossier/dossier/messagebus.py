"""The dossier service's in-process message bus: commands to their use case, events to their handlers.

Every ``StatusChanged`` becomes the contract's ``dossier_status_changed`` in
the outbox, inside the transaction that changed the status (both commit, or
neither). Nothing waits for a commit. The dispatching is
``portal_shared.unit_of_work``'s.
"""
from dossier import commands, use_cases
from dossier.domain.model import StatusChanged
from portal_shared import unit_of_work
from portal_shared.outbox import new_event
from portal_shared.timeutil import isoformat

STATUS_CHANGED = "dossier_status_changed"


def contract_payload(event):
    """The contract's ``dossier_status_changed`` payload (a fresh ``event_id``; ``occurred_at`` is the change's)."""
    payload = new_event(
        dossier_code=event.dossier_code,
        procedure_code=event.procedure.code,
        procedure_name=event.procedure.name,
        agency_code=event.procedure.agency_code,
        old_status=event.old_status.value if event.old_status else None,
        new_status=event.new_status.value,
        status_code=event.new_status.code,
        fee_amount=event.procedure.fee,
        due_at=isoformat(event.due_at),
        applicant=event.applicant.contact(),
        note=event.note,
    )
    payload["occurred_at"] = isoformat(event.at)
    return payload


def record_in_outbox(event, uow):
    uow.outbox.add(STATUS_CHANGED, contract_payload(event), aggregate_key=event.dossier_code)


IN_TRANSACTION = {
    StatusChanged: [record_in_outbox],
}
COMMAND_HANDLERS = {
    commands.SubmitDossier: use_cases.submit_dossier,
    commands.ActOnDossier: use_cases.act_on_dossier,
    commands.ActOnDossiers: use_cases.act_on_dossiers,
    commands.RecordPayment: use_cases.record_payment,
}


class MessageBus(unit_of_work.MessageBus):
    """``MessageBus(uow, catalogue=...)``; ``handle(command)`` returns the use case's result."""

    command_handlers = COMMAND_HANDLERS

