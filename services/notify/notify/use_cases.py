"""Use cases of the notify service: handlers ``(command, uow, settings)`` over a unit of work.

Life of a notification: created (with its text rendered, and handed to its
channel's delivery queue: the ``DeliveryQueued`` it records becomes a
delivery message in the outbox, in the same transaction) → claimed by a
channel consumer (status sending, attempts + 1, a lease) → sent /
temporary_failure (next_attempt_at = now + back-off) / permanent_failure; a
temporary failure after the last attempt is technical_failure and waits for
an operator. The timer (``queue_due_notifications``) puts due retries,
operator resends and rows whose lease ran out back on the queue. Claims are
one conditional UPDATE for a batch of messages: a message claims its row only
while the row is still at the attempt the message was queued for, so
duplicates and stale messages are dropped (see ``notify.pipeline``).

No SQLAlchemy here: the repositories of the unit of work hold the statements.
"""
from dataclasses import dataclass
from datetime import timedelta

from notify.commands import NotifyDossierStatusChanges
from notify.domain.model import (
    PRUNED_BODY,
    Contact,
    FirstSight,
    Message,  # noqa: F401  (the senders' view of a notification, re-exported for the channels)
    Notification,
    Status,
    attempt_result,
    kind_for_dossier_status,
)
from notify.rendering import TemplateParamsError, missing_params, render_email, render_sms
from portal_shared.logs import get_logger
from portal_shared.phones import normalise_vn_mobile
from portal_shared.timeutil import isoformat, utcnow

log = get_logger(__name__)

EARLY_RECEIPT_RETENTION = timedelta(days=1)  # a receipt kept for an outcome that never came


class NotificationNotFound(Exception):
    pass


class UnknownDossierContact(Exception):
    """A payment event for a dossier whose applicant this service cannot find (retried)."""


@dataclass(frozen=True)
class Settings:
    """Delivery settings read from config once per container."""

    policy: object
    lease_seconds: float = 60.0
    batch_size: int = 50


@dataclass(frozen=True)
class Delivery:
    """One queued delivery message: the notification, the attempt count it was queued at, and whether the
    broker delivered it before (its previous consumer died without acknowledging it)."""

    notification_id: str
    attempts: int
    redelivered: bool = False


@dataclass(frozen=True)
class Claimed:
    message: Message
    attempts: int  # after this claim


@dataclass(frozen=True)
class ReceiptApplied:
    notification_id: str
    status: str
    kept_for_outcome: bool = False  # the outcome was not recorded yet: the receipt waits for it


def dump_notification(notification):
    """The contract's Notification representation."""
    return {
        "id": notification.id,
        "channel": notification.channel,
        "recipient": notification.recipient,
        "template": notification.template,
        "reference": notification.reference,
        "status": notification.status,
        "provider": notification.provider,
        "attempts": notification.attempts,
        "created_at": isoformat(notification.created_at),
        "sent_at": isoformat(notification.sent_at),
    }


# --- deciding what to send ----------------------------------------------------------------


def _compose(contact, kind, params, event_id, now):
    """The SMS and e-mail of one event to one contact (each only where the contact has the address)."""
    new = []
    if contact.phone:
        new.append(Notification.create("sms", contact.phone, kind, params["dossier_code"], render_sms(kind, params),
                                       now, event_id))
    if contact.email:
        new.append(Notification.create("email", contact.email.strip(), kind, params["dossier_code"],
                                       render_email(kind, params), now, event_id))
    return new


def _write_to(uow, contact, kind, params, event_id, now):
    """``_compose``'s notifications, added to the unit of work. Returns their ids."""
    new = _compose(contact, kind, params, event_id, now)
    uow.notifications.add(*new)
    return [notification.id for notification in new]


def notify_dossier_status_changed(command, uow, settings=None):
    """Remember the applicant and create the SMS and e-mail for one ``dossier_status_changed``, once per
    event, in one transaction with its inbox claim. Returns their ids (None for a repeat)."""
    return notify_dossier_status_changes(NotifyDossierStatusChanges((command,)), uow)[0]


def notify_dossier_status_changes(command, uow, settings=None):
    """``notify_dossier_status_changed`` for several events at once: each event's applicant and messages
    are decided first, then stored with the inbox claims in one go (``record_first_sightings``: one
    statement on PostgreSQL), only for the events new to the inbox. Returns each event's ids (None for a
    repeat, a copy of an event given twice included)."""
    sightings = [_sighting_of_status(each) for each in command.commands]
    fresh = uow.record_first_sightings(sightings, command.commands[-1].now or utcnow())
    return [[notification.id for notification in sighting.notifications] if new else None
            for sighting, new in zip(sightings, fresh, strict=True)]


def _sighting_of_status(command):
    now = command.now or utcnow()
    event = command.event
    applicant = event.get("applicant") or {}
    contact = Contact(event["dossier_code"], event.get("procedure_name"), applicant.get("full_name"),
                      normalise_vn_mobile(applicant.get("phone") or "") or None, applicant.get("email") or None)
    claim = (command.consumer, event["event_id"])
    kind = kind_for_dossier_status(event["new_status"])
    if kind is None:
        return FirstSight(claim, contact)
    params = {
        "dossier_code": event["dossier_code"], "procedure_name": event.get("procedure_name"),
        "full_name": applicant.get("full_name"), "due_at": event.get("due_at"),
        "fee_amount": event.get("fee_amount"), "note": event.get("note"),
        "new_status": event["new_status"], "status_code": event.get("status_code"),
    }
    return FirstSight(claim, contact, tuple(_compose(contact, kind, params, event["event_id"], now)))


def notify_payment_event(command, uow, settings=None, find_dossier=None):
    """Receipt or refund message for a payment event, once per event. Returns the new ids.

    The applicant comes from the contacts learnt from dossier events; failing
    that, from ``find_dossier(code)`` (the dossier service).
    """
    now = command.now or utcnow()
    event = command.event
    with uow:
        if not uow.inbox.claim(command.consumer, event["event_id"]):
            return None
        contact = uow.contacts.get(event["dossier_code"])
        if contact is None and find_dossier is not None:
            dossier = find_dossier(event["dossier_code"])
            applicant = dossier.get("applicant") or {}
            contact = Contact(event["dossier_code"], dossier.get("procedure_name"), applicant.get("full_name"),
                              normalise_vn_mobile(applicant.get("phone") or "") or None,
                              applicant.get("email") or None)
        if contact is None:
            raise UnknownDossierContact(f"no contact known for dossier {event['dossier_code']!r}")
        params = {
            "dossier_code": event["dossier_code"], "procedure_name": contact.procedure_name,
            "full_name": contact.full_name, "amount": event.get("amount"), "txn_ref": event.get("txn_ref"),
            "gateway": event.get("gateway"), "gateway_txn_no": event.get("gateway_txn_no"),
            "paid_at": event.get("paid_at"),
        }
        ids = _write_to(uow, contact, command.kind, params, event["event_id"], now)
        uow.commit()
    return ids


def send_notification(command, uow, settings=None):
    """An operator's message: stored and queued; returns the notification (raises ``TemplateParamsError``)."""
    missing = missing_params(command.template, command.params)
    if missing:
        raise TemplateParamsError({name: ["required"] for name in missing})
    now = command.now or utcnow()
    render = render_sms if command.channel == "sms" else render_email
    notification = Notification.create(command.channel, command.recipient, command.template, command.reference,
                                       render(command.template, command.params), now)
    with uow:
        uow.notifications.add(notification)
        uow.commit()
    return notification


def queue_due_notifications(command, uow, settings):
    """Timer: queue due retries, operator resends and rows whose lease ran out. Returns the queued ids.

    Only the safety net: a queued message normally reaches a consumer at once,
    and a consumer killed mid-send leaves its message unacknowledged, so the
    broker hands it to another consumer (or to this one after a restart)
    without waiting for the lease. Rows are locked ``SKIP LOCKED`` and pushed
    a grace period ahead, so competing timers queue each row once.
    """
    now = command.now or utcnow()
    with uow:
        due = uow.notifications.due(now, settings.batch_size)
        lost = sum(1 for notification in due if notification.status == Status.SENDING)
        queued = [notification.id for notification in due if notification.queue_again(now, settings.policy)]
        uow.commit()
    if due:
        log.info("notifications_requeued", queued=len(queued), lost_while_sending=lost,
                 abandoned=len(due) - len(queued))
    return queued


# --- sending: the delivery pipeline's steps ----------------------------------------------------


def claim_deliveries(command, uow, settings):
    """Claim the rows of several delivery messages in one UPDATE; returns ``{notification_id: Claimed}``.

    A message claims its row when the row waits at the attempt count it was
    queued for, or (a takeover) when the row is ``sending`` past that count
    and its lease ran out or the broker redelivered the message: the consumer
    that held it is gone. Anything else (already sent, a newer attempt under
    way, a stale duplicate) is not claimed, and the caller acknowledges it.
    A takeover past the last attempt ends in technical_failure instead.
    """
    if not command.deliveries:
        return {}
    now = command.now or utcnow()
    # One UPDATE, committing by itself: no BEGIN and COMMIT round trips on the way to the provider. A
    # takeover past the last attempt is given up in a second statement of its own; a crash between the two
    # leaves the row ``sending`` and its message unacknowledged, so the redelivery claims it again and gives up.
    with uow.autocommitting():
        claimed = uow.notifications.claim(command.deliveries, now, now + timedelta(seconds=settings.lease_seconds))
        exhausted = {message.id for message, attempts in claimed if attempts > settings.policy.max_attempts}
        uow.notifications.give_up(exhausted, now)
    return {message.id: Claimed(message, attempts) for message, attempts in claimed if message.id not in exhausted}


def record_outcomes(command, uow, settings):
    """Record several attempts' outcomes in one statement; ``command.results`` = [(Claimed, Outcome)].

    A row is updated only while it is still ``sending`` at this attempt: a
    receipt that came first, an operator or a takeover keeps theirs.
    """
    if not command.results:
        return
    now = command.now or utcnow()
    results = [(claimed, outcome, attempt_result(outcome, claimed.attempts, settings.policy, now))
               for claimed, outcome in command.results]
    with uow:
        uow.notifications.record_attempts(
            [(claimed.message.id, claimed.attempts, result) for claimed, _, result in results], now)
        early = uow.notifications.take_early_receipts(  # receipts exist for SMS only: none for an e-mail batch
            [claimed.message.id for claimed, _, _ in results if claimed.message.channel == "sms"])
        applied = [uow.notifications.apply_receipt(provider, reference, status, now, notification_id=notification_id)
                   for notification_id, provider, reference, status in early]
        uow.commit()
    for claimed, outcome, result in results:
        log.info("notification_attempted", notification_id=claimed.message.id, channel=claimed.message.channel,
                 status=result.status, provider=outcome.provider, attempt=claimed.attempts, error=outcome.error)
    for (notification_id, _, _, _), changed in zip(early, applied):
        log.info("early_receipt", notification_id=notification_id, applied=changed is not None,
                 status=changed[1] if changed else None)


def apply_sms_receipt(command, uow, settings=None):
    """Apply a provider's delivery receipt; returns ``ReceiptApplied``, or None when it changes nothing.

    Only a message sent through that provider under the receipt's reference
    (and whose id is the receipt's, when it names one), still in flight
    (sending or sent), moves: never one that failed temporarily (it waits for
    its retry), nor a final one. A receipt naming a message still ``sending``
    (the provider answered, its outcome is not recorded yet) is kept and
    applied when the outcome is recorded (``record_outcomes``).
    """
    if not command.provider_reference or command.status is None:
        return None
    now = command.now or utcnow()
    reference = str(command.provider_reference)
    kept = False

    def apply():
        return uow.notifications.apply_receipt(command.provider, reference, command.status, now,
                                               notification_id=command.notification_id)

    with uow.autocommitting():  # the usual case, one statement: no BEGIN / COMMIT round trips
        changed = apply()
    if changed is None and command.notification_id:
        with uow:
            kept = uow.notifications.keep_early_receipt(command.provider, reference, command.status,
                                                        command.notification_id, now)
            if not kept:  # its outcome was recorded while this waited for the row: it applies now
                changed = apply()
            uow.commit()
    if kept:
        return ReceiptApplied(command.notification_id, Status.SENDING, kept_for_outcome=True)
    return ReceiptApplied(*changed) if changed is not None else None


# --- operators ------------------------------------------------------------------------------


def resend_notifications(command, uow, settings=None):
    """Put failed notifications back in the queue with fresh attempts. Returns them."""
    if not (command.notification_id or command.reference):
        raise ValueError("give a notification id or a reference")
    now = command.now or utcnow()
    with uow:
        found = uow.notifications.resendable(command.notification_id, command.reference)
        for notification in found:
            notification.resend(now)
        uow.commit()
    return found


def prune_bodies(command, uow, settings=None):
    """Old message texts are personal data kept no longer than needed: a notification that reached its
    recipient (sent or delivered) keeps its row (the audit trail) but loses its subject and bodies once
    older than the retention. Resendable ones keep their text: a resend sends what was decided then.
    Returns how many were blanked."""
    now = command.now or utcnow()
    cutoff = now - timedelta(days=command.retention_days)
    with uow:
        pruned = uow.notifications.prune_bodies(cutoff, PRUNED_BODY)
        uow.notifications.prune_early_receipts(now - EARLY_RECEIPT_RETENTION)
        uow.commit()
    return pruned


# --- queries ----------------------------------------------------------------------------------


def get_notification(uow, notification_id):
    with uow:
        notification = uow.notifications.get(notification_id)
    if notification is None:
        raise NotificationNotFound(f"no notification {notification_id!r}")
    return notification


MAX_LISTED = 500  # per reference; an automatic dossier produces a few dozen at most


def list_notifications(uow, reference, limit=MAX_LISTED):
    with uow:
        return uow.notifications.for_reference(reference, limit)
