"""portal_sync's in-process message bus: each command to its use case.

``MessageBus(uow, directory=..., client=..., codes=...)``: the delivery's use
cases take the dossier service's reader, the portal client and the national
codes; the event handlers need none. portal_sync raises no domain events: its
follow-up (waking the delivery loop) is the entry point's, on a True result.
The dispatching is ``portal_shared.unit_of_work``'s.
"""
from portal_shared import unit_of_work
from portal_sync import commands, use_cases

COMMAND_HANDLERS = {
    commands.RecordStatusChange: use_cases.record_status_change,
    commands.RecordStatusChanges: use_cases.record_status_changes,
    commands.RecordFee: use_cases.record_fee,
    commands.DeliverDue: use_cases.deliver_due,
    commands.Release: use_cases.release,
    commands.CheckDrift: use_cases.check_drift,
    commands.TrackBackfillPage: use_cases.track_backfill_page,
    commands.FinishBackfill: use_cases.finish_backfill,
}


class MessageBus(unit_of_work.MessageBus):
    command_handlers = COMMAND_HANDLERS
