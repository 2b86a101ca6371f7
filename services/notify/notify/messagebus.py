"""The notify service's in-process message bus: commands to their use case, events to their handlers.

``IN_TRANSACTION`` handlers run inside the transaction that raised the event,
when the unit of work commits: a notification handed to its channel's queue
(``DeliveryQueued``) becomes a delivery message in the outbox with it, or
neither is stored. ``AFTER_COMMIT`` handlers would run once it has committed
(notify has none: sending is the delivery pipeline's, fed by the queue).
"""
from notify import commands, use_cases
from notify.domain.model import DeliveryQueued
from portal_shared import unit_of_work
from portal_shared.outbox import new_event

# routing keys of the delivery messages on the ``notify.events`` exchange (``notify.pipeline`` binds its queues)
DELIVERY_EVENT_TYPES = {"sms": "deliver_sms", "email": "deliver_email"}


def queue_delivery(event, uow):
    """The delivery message of one notification: its consumer claims the row at ``attempts``."""
    payload = new_event(notification_id=event.notification_id, channel=event.channel, attempts=event.attempts)
    uow.outbox.add(DELIVERY_EVENT_TYPES[event.channel], payload, aggregate_key=event.notification_id)


IN_TRANSACTION = {
    DeliveryQueued: [queue_delivery],
}
AFTER_COMMIT = {}
COMMAND_HANDLERS = {
    commands.NotifyDossierStatusChanged: use_cases.notify_dossier_status_changed,
    commands.NotifyDossierStatusChanges: use_cases.notify_dossier_status_changes,
    commands.NotifyPaymentEvent: use_cases.notify_payment_event,
    commands.SendNotification: use_cases.send_notification,
    commands.QueueDueNotifications: use_cases.queue_due_notifications,
    commands.ClaimDeliveries: use_cases.claim_deliveries,
    commands.RecordOutcomes: use_cases.record_outcomes,
    commands.ApplySmsReceipt: use_cases.apply_sms_receipt,
    commands.ResendNotifications: use_cases.resend_notifications,
    commands.PruneBodies: use_cases.prune_bodies,
}


class MessageBus(unit_of_work.MessageBus):
    """``MessageBus(uow, settings=..., find_dossier=...)``; ``handle(command)`` returns the use case's result.

    ``find_dossier(code)`` (the dossier service) is where a payment event
    whose applicant notify has not learnt yet finds one.
    """

    command_handlers = COMMAND_HANDLERS
    after_commit = AFTER_COMMIT
