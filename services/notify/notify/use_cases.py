"""Use cases of the notify service: plain functions over a unit of work.

Life of a notification: created (with its text rendered, and a delivery
message for its channel's queue written to the outbox in the same
transaction) → claimed by a channel consumer (status sending, attempts + 1, a
lease) → sent / temporary_failure (next_attempt_at = now + back-off) /
permanent_failure; a temporary failure after the last attempt is
technical_failure and waits for an operator. ``enqueue_due`` (the timer) puts
due retries, operator resends and rows whose lease ran out back on the queue.
Claims are one conditional UPDATE for a batch of messages: a message claims
its row only while the row is still at the attempt the message was queued
for, so duplicates and stale messages are dropped (see ``notify.pipeline``).
"""
import uuid
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from notify.domain.model import Status, kind_for_dossier_status, status_after_attempt
from notify.orm import DossierContactRow, NotificationRow
from notify.rendering import TemplateParamsError, missing_params, render_email, render_sms
from portal_shared.inbox import claim_event
from portal_shared.logs import get_logger
from portal_shared.outbox import new_event, record_event
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
    lease_seconds: float = 60.0
    batch_size: int = 50


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


DELIVERY_EVENT_TYPES = {"sms": "deliver_sms", "email": "deliver_email"}
# until a queued message is claimed, the timer leaves its row alone this long (then queues it again)
QUEUED_GRACE_SECONDS = 60.0


def enqueue_delivery(session, notification_id, channel, attempts, now=None):
    """Hand one notification to its channel's delivery queue, through the outbox (caller's transaction).

    ``attempts`` is the row's attempt count when queued: the consumer claims the row only at that count.
    """
    payload = new_event(notification_id=notification_id, channel=channel, attempts=attempts)
    record_event(session, DELIVERY_EVENT_TYPES[channel], payload, aggregate_key=notification_id)


def _notification_values(channel, recipient, kind, params, reference, event_id, now):
    """A new notification row's columns, its text rendered (raises ``TemplateParamsError``)."""
    values = {
        "id": str(uuid.uuid4()), "event_id": event_id, "channel": channel, "recipient": recipient, "template": kind,
        "reference": reference, "status": Status.CREATED, "attempts": 0, "created_at": now, "updated_at": now,
        # the queued message delivers it; the timer only steps in if nobody claimed it by then
        "next_attempt_at": now + timedelta(seconds=QUEUED_GRACE_SECONDS),
        "subject": None, "html_body": None, "segments": None,
    }
    if channel == "sms":
        sms = render_sms(kind, params)
        values["body"], values["segments"] = sms.text, sms.segments
    else:
        email = render_email(kind, params)
        values["subject"], values["body"], values["html_body"] = email.subject, email.text, email.html
    return values


def new_notification(session, channel, recipient, kind, params, reference, event_id=None, now=None):
    """Render and store a notification and queue it for delivery, in the caller's transaction.

    Raises ``TemplateParamsError``.
    """
    now = now or utcnow()
    row = NotificationRow(**_notification_values(channel, recipient, kind, params, reference, event_id, now))
    session.add(row)
    session.flush()
    enqueue_delivery(session, row.id, channel, 0)
    return row


def _create_for_contact(session, event_id, kind, params, phone, email, now):
    """The event path: every notification of one event in one INSERT, each queued for its channel."""
    rows = []
    phone = normalise_vn_mobile(phone) if phone else None
    if phone:
        rows.append(_notification_values("sms", phone, kind, params, params["dossier_code"], event_id, now))
    if email:
        rows.append(_notification_values("email", email.strip(), kind, params, params["dossier_code"], event_id, now))
    if rows:
        session.execute(sa.insert(NotificationRow.__table__), rows)
        for row in rows:
            enqueue_delivery(session, row["id"], row["channel"], 0)
    return [row["id"] for row in rows]


def _save_contact(session, event, now):
    """Upsert the applicant's contact (one statement; concurrent events for one dossier do not collide)."""
    applicant = event.get("applicant") or {}
    values = {
        "dossier_code": event["dossier_code"], "procedure_name": event.get("procedure_name"),
        "full_name": applicant.get("full_name"),
        "phone": normalise_vn_mobile(applicant.get("phone") or "") or None,
        "email": applicant.get("email") or None, "updated_at": now,
    }
    table = DossierContactRow.__table__
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.dossier_code],
        set_={
            "procedure_name": sa.func.coalesce(statement.excluded.procedure_name, table.c.procedure_name),
            "full_name": statement.excluded.full_name, "phone": statement.excluded.phone,
            "email": statement.excluded.email, "updated_at": statement.excluded.updated_at,
        },
    )
    session.execute(statement)


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


def _due(now):
    table = NotificationRow
    return sa.or_(
        sa.and_(table.status.in_(Status.PENDING), table.next_attempt_at <= now),
        sa.and_(table.status == Status.SENDING, table.lease_until < now),  # its consumer and message were lost
    )


def enqueue_due(uow, settings, now=None):
    """Timer: queue due retries, operator resends and rows whose lease ran out. Returns the queued ids.

    Only the safety net: a queued message normally reaches a consumer at once,
    and a consumer killed mid-send leaves its message unacknowledged, so the
    broker hands it to another consumer (or to this one after a restart)
    without waiting for the lease. Rows are locked ``SKIP LOCKED`` and pushed
    ``QUEUED_GRACE_SECONDS`` ahead, so competing timers queue each row once.
    """
    now = now or utcnow()
    with uow.transaction() as session:
        statement = (
            sa.select(NotificationRow.id, NotificationRow.channel, NotificationRow.attempts, NotificationRow.status)
            .where(_due(now)).order_by(NotificationRow.next_attempt_at).limit(settings.batch_size)
        )
        if session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        rows = session.execute(statement).all()
        queued, abandoned, lost = [], [], []
        for row in rows:
            if row.status == Status.SENDING and settings.policy.exhausted(row.attempts):
                abandoned.append(row.id)
                continue
            if row.status == Status.SENDING:
                lost.append(row.id)
            enqueue_delivery(session, row.id, row.channel, row.attempts)
            queued.append(row.id)
        if abandoned:
            session.execute(
                sa.update(NotificationRow).where(NotificationRow.id.in_(abandoned))
                .values(status=Status.TECHNICAL_FAILURE, lease_until=None, next_attempt_at=None, updated_at=now,
                        last_error="lost while sending on the last attempt")
            )
        if lost:
            session.execute(
                sa.update(NotificationRow).where(NotificationRow.id.in_(lost))
                .values(status=Status.TEMPORARY_FAILURE, lease_until=None, updated_at=now,
                        last_error="lease expired while sending")
            )
        if queued:
            session.execute(
                sa.update(NotificationRow).where(NotificationRow.id.in_(queued))
                .values(next_attempt_at=now + timedelta(seconds=QUEUED_GRACE_SECONDS))
            )
    if queued or abandoned:
        log.info("notifications_requeued", queued=len(queued), lost_while_sending=len(lost), abandoned=len(abandoned))
    return queued


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


def claim_batch(uow, deliveries, settings, now=None):
    """Claim the rows of several delivery messages in one UPDATE; returns ``{notification_id: Claimed}``.

    A message claims its row when the row waits at the attempt count it was
    queued for, or (a takeover) when the row is ``sending`` past that count
    and its lease ran out or the broker redelivered the message: the consumer
    that held it is gone. Anything else (already sent, a newer attempt under
    way, a stale duplicate) is not claimed, and the caller acknowledges it.
    A takeover past the last attempt ends in technical_failure instead.
    """
    now = now or utcnow()
    if not deliveries:
        return {}
    table = NotificationRow
    conditions = []
    for delivery in deliveries:
        takeover = sa.and_(table.status == Status.SENDING, table.attempts > delivery.attempts,
                           table.lease_until < now if not delivery.redelivered else sa.true())
        conditions.append(sa.and_(
            table.id == delivery.notification_id,
            sa.or_(sa.and_(table.status.in_(Status.PENDING), table.attempts == delivery.attempts), takeover),
        ))
    statement = (
        sa.update(table).where(sa.or_(*conditions))
        .values(status=Status.SENDING, attempts=table.attempts + 1,
                lease_until=now + timedelta(seconds=settings.lease_seconds), updated_at=now)
        .returning(table.id, table.channel, table.recipient, table.subject, table.body, table.html_body,
                   table.attempts)
        .execution_options(synchronize_session=False)
    )
    with uow.transaction() as session:
        rows = session.execute(statement).all()
        exhausted = [row.id for row in rows if row.attempts > settings.policy.max_attempts]
        if exhausted:
            session.execute(
                sa.update(table).where(table.id.in_(exhausted))
                .values(status=Status.TECHNICAL_FAILURE, lease_until=None, next_attempt_at=None, updated_at=now,
                        last_error="lost while sending on the last attempt")
                .execution_options(synchronize_session=False)
            )
    return {
        row.id: Claimed(Message(row.id, row.channel, row.recipient, row.subject, row.body, row.html_body),
                        row.attempts)
        for row in rows if row.id not in exhausted
    }


def record_outcomes(uow, results, settings, now=None):
    """Record several attempts' outcomes in one executemany UPDATE; ``results`` = [(Claimed, Outcome)].

    A row is updated only while it is still ``sending`` at this attempt: a
    receipt that came first, an operator or a takeover keeps theirs.
    """
    now = now or utcnow()
    if not results:
        return
    table = NotificationRow
    parameters = []
    for claimed, outcome in results:
        status = status_after_attempt(outcome, claimed.attempts, settings.policy)
        parameters.append({
            "b_id": claimed.message.id, "b_attempts": claimed.attempts, "b_status": status,
            "b_error": outcome.error, "b_provider": outcome.provider,
            "b_sent_at": now if status == Status.SENT else None,
            "b_reference": outcome.reference if status == Status.SENT else None,
            "b_next": now + settings.policy.delay_after(claimed.attempts) if status == Status.TEMPORARY_FAILURE else None,
        })
    statement = (
        sa.update(table)
        .where(table.id == sa.bindparam("b_id"), table.status == Status.SENDING,
               table.attempts == sa.bindparam("b_attempts"))
        .values(status=sa.bindparam("b_status"), updated_at=now, lease_until=None, last_error=sa.bindparam("b_error"),
                provider=sa.func.coalesce(sa.bindparam("b_provider", type_=sa.String), table.provider),
                sent_at=sa.bindparam("b_sent_at", type_=table.sent_at.type),
                provider_reference=sa.bindparam("b_reference", type_=sa.String),
                next_attempt_at=sa.bindparam("b_next", type_=table.next_attempt_at.type))
        .execution_options(synchronize_session=False)
    )
    with uow.transaction() as session:
        session.connection().execute(statement, parameters)
    for (claimed, outcome), values in zip(results, parameters):
        log.info("notification_attempted", notification_id=claimed.message.id, channel=claimed.message.channel,
                 status=values["b_status"], provider=outcome.provider, attempt=claimed.attempts, error=outcome.error)


def _load(session, notification_id, lock=False):
    # populate_existing: the worker's session may hold an older copy of the row
    return session.get(NotificationRow, notification_id, with_for_update=lock or None, populate_existing=True)


def get_notification(uow, notification_id):
    with uow.read() as session:
        row = _load(session, notification_id)
    if row is None:
        raise NotificationNotFound(f"no notification {notification_id!r}")
    return row


MAX_LISTED = 500  # per reference; an automatic dossier produces a few dozen at most


def list_notifications(uow, reference, limit=MAX_LISTED):
    with uow.read() as session:
        rows = session.execute(
            sa.select(NotificationRow).where(NotificationRow.reference == reference)
            .order_by(NotificationRow.created_at, NotificationRow.channel).limit(limit)
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
