"""Use cases of the notify service: plain functions over a unit of work.

Life of a notification: created (with its text rendered) → claimed for an
attempt (status sending, attempts + 1, a lease) → sent / temporary_failure
(next_attempt_at = now + back-off) / permanent_failure; a temporary failure
after the last attempt is technical_failure and waits for an operator.
Claims are atomic conditional updates (and ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), so several processes never work on the same notification.
"""
import uuid
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from notify.domain.model import Outcome, Status, kind_for_dossier_status, status_after_attempt
from notify.orm import DossierContactRow, NotificationRow
from notify.rendering import TemplateParamsError, missing_params, render_email, render_sms
from portal_shared.inbox import claim_event
from portal_shared.logs import get_logger
from portal_shared.phones import normalise_vn_mobile
from portal_shared.timeutil import isoformat, utcnow

log = get_logger(__name__)


class NotificationNotFound(Exception):
    pass


class UnknownDossierContact(Exception):
    """A payment event for a dossier whose applicant this service cannot find (retried)."""


@dataclass(frozen=True)
class Settings:
    """Delivery settings read from config once per container."""

    policy: object
    lease_seconds: float = 120.0
    batch_size: int = 20


@dataclass(frozen=True)
class Message:
    """What a channel sender needs to deliver one notification."""

    id: str
    channel: str
    recipient: str
    subject: str | None
    body: str
    html_body: str | None


def dump_notification(row):
    """The contract's Notification representation."""
    return {
        "id": row.id,
        "channel": row.channel,
        "recipient": row.recipient,
        "template": row.template,
        "reference": row.reference,
        "status": row.status,
        "provider": row.provider,
        "attempts": row.attempts,
        "created_at": isoformat(row.created_at),
        "sent_at": isoformat(row.sent_at),
    }


def new_notification(session, channel, recipient, kind, params, reference, event_id=None, now=None):
    """Render and store a notification in the caller's transaction (raises ``TemplateParamsError``)."""
    now = now or utcnow()
    row = NotificationRow(
        id=str(uuid.uuid4()), event_id=event_id, channel=channel, recipient=recipient, template=kind,
        reference=reference, status=Status.CREATED, attempts=0, created_at=now, updated_at=now, next_attempt_at=now,
    )
    if channel == "sms":
        sms = render_sms(kind, params)
        row.body, row.segments = sms.text, sms.segments
    else:
        email = render_email(kind, params)
        row.subject, row.body, row.html_body = email.subject, email.text, email.html
    session.add(row)
    session.flush()
    return row


def _create_for_contact(session, event_id, kind, params, phone, email, now):
    ids = []
    phone = normalise_vn_mobile(phone) if phone else None
    if phone:
        ids.append(new_notification(session, "sms", phone, kind, params, params["dossier_code"], event_id, now).id)
    if email:
        ids.append(new_notification(session, "email", email.strip(), kind, params, params["dossier_code"], event_id, now).id)
    return ids


def _save_contact(session, event, now):
    applicant = event.get("applicant") or {}
    contact = session.get(DossierContactRow, event["dossier_code"])
    if contact is None:
        contact = DossierContactRow(dossier_code=event["dossier_code"])
        session.add(contact)
    contact.procedure_name = event.get("procedure_name") or contact.procedure_name
    contact.full_name = applicant.get("full_name")
    contact.phone = normalise_vn_mobile(applicant.get("phone") or "") or None
    contact.email = applicant.get("email") or None
    contact.updated_at = now


def notify_dossier_status_changed(uow, consumer, event, now=None):
    """Create the SMS and e-mail for one ``dossier_status_changed``, once per event. Returns their ids."""
    now = now or utcnow()
    with uow.transaction() as session:
        if not claim_event(session, consumer, event["event_id"]):
            return None
        _save_contact(session, event, now)
        kind = kind_for_dossier_status(event["new_status"])
        if kind is None:
            return []
        applicant = event.get("applicant") or {}
        params = {
            "dossier_code": event["dossier_code"], "procedure_name": event.get("procedure_name"),
            "full_name": applicant.get("full_name"), "due_at": event.get("due_at"),
            "fee_amount": event.get("fee_amount"), "note": event.get("note"),
            "new_status": event["new_status"], "status_code": event.get("status_code"),
        }
        return _create_for_contact(session, event["event_id"], kind, params, applicant.get("phone"),
                                   applicant.get("email"), now)


def notify_payment_event(uow, consumer, kind, event, find_dossier=None, now=None):
    """Receipt or refund message for a payment event, once per event. Returns the new ids.

    The applicant comes from the contacts learnt from dossier events; failing
    that, from ``find_dossier(code)`` (the dossier service).
    """
    now = now or utcnow()
    with uow.transaction() as session:
        if not claim_event(session, consumer, event["event_id"]):
            return None
        contact = session.get(DossierContactRow, event["dossier_code"])
        if contact is not None:
            procedure_name, full_name, phone, email = contact.procedure_name, contact.full_name, contact.phone, contact.email
        elif find_dossier is not None:
            dossier = find_dossier(event["dossier_code"])
            applicant = dossier.get("applicant") or {}
            procedure_name, full_name = dossier.get("procedure_name"), applicant.get("full_name")
            phone, email = applicant.get("phone"), applicant.get("email")
        else:
            raise UnknownDossierContact(f"no contact known for dossier {event['dossier_code']!r}")
        params = {
            "dossier_code": event["dossier_code"], "procedure_name": procedure_name, "full_name": full_name,
            "amount": event.get("amount"), "txn_ref": event.get("txn_ref"), "gateway": event.get("gateway"),
            "gateway_txn_no": event.get("gateway_txn_no"), "paid_at": event.get("paid_at"),
        }
        return _create_for_contact(session, event["event_id"], kind, params, phone, email, now)


def create_notification(uow, request, now=None):
    """RPC ``send_notification``: store a validated request; returns the row (raises ``TemplateParamsError``)."""
    missing = missing_params(request["template"], request["params"])
    if missing:
        raise TemplateParamsError({name: ["required"] for name in missing})
    with uow.transaction() as session:
        return new_notification(session, request["channel"], request["recipient"], request["template"],
                                request["params"], request["reference"], None, now)


def _claimable(now):
    table = NotificationRow
    return sa.or_(
        sa.and_(table.status.in_(Status.PENDING), table.next_attempt_at <= now),
        sa.and_(table.status == Status.SENDING, table.lease_until < now),  # a process died mid-send
    )


def claim_due(uow, settings, now=None):
    """Take up to ``batch_size`` due notifications for this process; returns their ids."""
    now = now or utcnow()
    with uow.transaction() as session:
        statement = (
            sa.select(NotificationRow.id, NotificationRow.attempts, NotificationRow.status)
            .where(_claimable(now)).order_by(NotificationRow.next_attempt_at).limit(settings.batch_size)
        )
        if session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        rows = session.execute(statement).all()
        ids, abandoned = [], []
        for row in rows:
            if row.status == Status.SENDING and settings.policy.exhausted(row.attempts):
                abandoned.append(row.id)
            else:
                ids.append(row.id)
        if abandoned:
            session.execute(
                sa.update(NotificationRow).where(NotificationRow.id.in_(abandoned))
                .values(status=Status.TECHNICAL_FAILURE, lease_until=None, next_attempt_at=None, updated_at=now,
                        last_error="lost while sending on the last attempt")
            )
        return [i for i in ids if _claim(session, i, settings, now)]


def _claim(session, notification_id, settings, now):
    result = session.execute(
        sa.update(NotificationRow)
        .where(NotificationRow.id == notification_id, _claimable(now))
        .values(status=Status.SENDING, attempts=NotificationRow.attempts + 1,
                lease_until=now + timedelta(seconds=settings.lease_seconds), updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def claim_one(uow, notification_id, settings, now=None):
    """Claim one notification for an attempt now; False when it is not due or another process has it."""
    now = now or utcnow()
    with uow.transaction() as session:
        return _claim(session, notification_id, settings, now)


def attempt(uow, channels, notification_id, settings, now=None):
    """Send a claimed notification through its channel and record the outcome. Returns the row."""
    with uow.read() as session:
        row = _load(session, notification_id)
    message = Message(row.id, row.channel, row.recipient, row.subject, row.body, row.html_body)
    sender = channels.get(row.channel)
    try:
        outcome = sender.send(message)
    except Exception as exc:  # a bug or an unexpected library error must not leave the row stuck
        log.exception("notification_attempt_crashed", notification_id=row.id)
        outcome = Outcome(Status.TEMPORARY_FAILURE, None, None, f"{type(exc).__name__}: {exc}"[:500])
    return record_outcome(uow, notification_id, outcome, settings, now)


def record_outcome(uow, notification_id, outcome, settings, now=None):
    now = now or utcnow()
    with uow.transaction() as session:
        row = _load(session, notification_id, lock=True)
        if row.status != Status.SENDING:  # a receipt came first, or an operator acted: keep theirs
            return row
        status = status_after_attempt(outcome, row.attempts, settings.policy)
        row.status, row.updated_at, row.lease_until = status, now, None
        row.last_error = outcome.error
        if outcome.provider:
            row.provider = outcome.provider
        if status == Status.SENT:
            row.sent_at, row.provider_reference, row.next_attempt_at = now, outcome.reference, None
        elif status == Status.TEMPORARY_FAILURE:
            row.next_attempt_at = now + settings.policy.delay_after(row.attempts)
        else:
            row.next_attempt_at = None
    log.info("notification_attempted", notification_id=row.id, channel=row.channel, status=row.status,
             provider=row.provider, attempt=row.attempts, error=outcome.error)
    return row


def deliver_now(uow, channels, notification_ids, settings):
    """Try the given notifications at once (each only if this process wins its claim)."""
    for notification_id in notification_ids:
        if claim_one(uow, notification_id, settings):
            attempt(uow, channels, notification_id, settings)


def _load(session, notification_id, lock=False):
    # populate_existing: the worker's session may hold an older copy of the row
    return session.get(NotificationRow, notification_id, with_for_update=lock or None, populate_existing=True)


def get_notification(uow, notification_id):
    with uow.read() as session:
        row = _load(session, notification_id)
    if row is None:
        raise NotificationNotFound(f"no notification {notification_id!r}")
    return row


def list_notifications(uow, reference):
    with uow.read() as session:
        rows = session.execute(
            sa.select(NotificationRow).where(NotificationRow.reference == reference)
            .order_by(NotificationRow.created_at, NotificationRow.channel)
            .execution_options(populate_existing=True)
        ).scalars().all()
    return rows


RECEIPT_APPLIES_TO = (Status.SENDING, Status.SENT)


def apply_esms_receipt(uow, request_id, sms_id, status, now=None):
    """Apply an eSMS receipt; returns the notification it moved, or None when it changes nothing.

    Only a message sent through eSMS whose SMSID is the receipt's (and whose id
    is its RequestId, when given), still in flight (sending or sent), moves:
    never one failed temporarily (it waits for its retry), nor a final one.
    """
    if not sms_id or status is None:
        return None
    now = now or utcnow()
    with uow.transaction() as session:
        conditions = [NotificationRow.channel == "sms", NotificationRow.provider == "esms",
                      NotificationRow.provider_reference == str(sms_id),
                      NotificationRow.status.in_(RECEIPT_APPLIES_TO)]
        if request_id:
            conditions.append(NotificationRow.id == str(request_id))
        row = session.execute(
            sa.select(NotificationRow).where(*conditions).with_for_update()
            .execution_options(populate_existing=True)
        ).scalars().first()
        if row is None:
            return None
        row.status, row.updated_at = status, now
        row.sent_at = row.sent_at or now
        row.lease_until = row.next_attempt_at = None
        if status == Status.DELIVERED:
            row.delivered_at = now
        return row


def resend(uow, notification_id=None, reference=None, now=None):
    """Operator: put failed notifications back in the queue with fresh attempts. Returns the rows."""
    now = now or utcnow()
    with uow.transaction() as session:
        statement = sa.select(NotificationRow).where(NotificationRow.status.in_(Status.RESENDABLE))
        if notification_id:
            statement = statement.where(NotificationRow.id == notification_id)
        elif reference:
            statement = statement.where(NotificationRow.reference == reference)
        else:
            raise ValueError("give a notification id or a reference")
        rows = session.execute(statement.with_for_update().execution_options(populate_existing=True)).scalars().all()
        for row in rows:
            row.status, row.attempts, row.next_attempt_at, row.updated_at = Status.CREATED, 0, now, now
            row.lease_until = None
        return rows
