"""SQLAlchemy Core repositories of the notify service: notifications, contacts, the outbox and the inbox.

Only the unit of work (``unit_of_work.SqlUnitOfWork``) builds them; the use
cases see them through it. Every method is one statement (the hot paths: a
multi-row INSERT for an event's notifications and another for their delivery
messages, one conditional UPDATE ... RETURNING for a batch of claims, one
executemany UPDATE for a batch of outcomes, one UPDATE ... RETURNING for a
receipt), written for PostgreSQL and for the SQLite of ``make run``.
"""
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from notify.domain.model import LOST_ON_LAST_ATTEMPT, RECEIPT_APPLIES_TO, Contact, Message, Notification, Status
from notify.orm import DossierContactRow, NotificationRow
from portal_shared.inbox import claim_event
from portal_shared.outbox import NOTIFY_CHANNEL, PENDING_FLAG
from portal_shared.schema import outbox_table
from portal_shared.timeutil import utcnow

notifications = NotificationRow.__table__
contacts = DossierContactRow.__table__

NOTIFICATION_FIELDS = tuple(column.name for column in notifications.c)
# what the timer, a resend or an operator changes on a loaded notification
STATE_FIELDS = ("status", "attempts", "next_attempt_at", "lease_until", "last_error", "updated_at")


def _dialect(session):
    return session.get_bind().dialect.name


def _insert(session):
    return postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert


def notification_from_row(row):
    return Notification(**{name: row[name] for name in NOTIFICATION_FIELDS})


class SqlNotifications:
    def __init__(self, session):
        self._session = session
        self.seen = []  # every notification handed out or added: the unit of work collects their events
        self._loaded = []  # the ones ``save`` writes back

    def add(self, *new):
        """Insert new notifications, in one statement."""
        if new:
            self._session.execute(notifications.insert().values(
                [{name: getattr(notification, name) for name in NOTIFICATION_FIELDS} for notification in new]))
            self.seen.extend(new)

    def _load(self, statement):
        found = [notification_from_row(row) for row in self._session.execute(statement).mappings()]
        self.seen.extend(found)
        self._loaded.extend(found)
        return found

    def get(self, notification_id):
        found = self._load(sa.select(notifications).where(notifications.c.id == notification_id))
        return found[0] if found else None

    def for_reference(self, reference, limit):
        return self._load(sa.select(notifications).where(notifications.c.reference == reference)
                          .order_by(notifications.c.created_at, notifications.c.channel).limit(limit))

    def due(self, now, limit):
        """Locked (skipping rows another timer holds): rows waiting for an attempt whose time has come, and
        rows ``sending`` whose lease ran out (their consumer and message were lost)."""
        statement = (
            sa.select(notifications).where(sa.or_(
                sa.and_(notifications.c.status.in_(Status.PENDING), notifications.c.next_attempt_at <= now),
                sa.and_(notifications.c.status == Status.SENDING, notifications.c.lease_until < now),
            )).order_by(notifications.c.next_attempt_at).limit(limit)
        )
        if _dialect(self._session) == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        return self._load(statement)

    def resendable(self, notification_id=None, reference=None):
        """Locked: the failed notification ``notification_id``, or every failed one of ``reference``."""
        statement = sa.select(notifications).where(notifications.c.status.in_(Status.RESENDABLE))
        if notification_id:
            statement = statement.where(notifications.c.id == notification_id)
        else:
            statement = statement.where(notifications.c.reference == reference)
        return self._load(statement.order_by(notifications.c.created_at).with_for_update())

    def save(self):
        """Write back the state of the notifications loaded in this transaction (one executemany UPDATE)."""
        if self._loaded:
            self._session.connection().execute(
                notifications.update().where(notifications.c.id == sa.bindparam("b_id"))
                .values(**{name: sa.bindparam(f"b_{name}") for name in STATE_FIELDS}),
                [{"b_id": n.id, **{f"b_{name}": getattr(n, name) for name in STATE_FIELDS}} for n in self._loaded],
            )
            self._loaded.clear()

    def claim(self, deliveries, now, lease_until):
        """One conditional UPDATE ... RETURNING for several delivery messages → ``[(Message, attempts)]``.

        A message claims its row when the row waits at the attempt count it
        was queued for, or (a takeover) when the row is ``sending`` past that
        count and its lease ran out or the broker redelivered the message.
        """
        table = notifications.c
        conditions = []
        for delivery in deliveries:
            takeover = sa.and_(table.status == Status.SENDING, table.attempts > delivery.attempts,
                               table.lease_until < now if not delivery.redelivered else sa.true())
            conditions.append(sa.and_(
                table.id == delivery.notification_id,
                sa.or_(sa.and_(table.status.in_(Status.PENDING), table.attempts == delivery.attempts), takeover),
            ))
        statement = (
            notifications.update().where(sa.or_(*conditions))
            .values(status=Status.SENDING, attempts=table.attempts + 1, lease_until=lease_until, updated_at=now)
            .returning(table.id, table.channel, table.recipient, table.subject, table.body, table.html_body,
                       table.attempts)
        )
        return [(Message(row[0], row[1], row[2], row[3], row[4], row[5]), row[6])
                for row in self._session.execute(statement)]

    def give_up(self, ids, now):
        """Claimed past the last attempt (a takeover after the last try was lost): technical failure."""
        if ids:
            self._session.execute(
                notifications.update().where(notifications.c.id.in_(ids))
                .values(status=Status.TECHNICAL_FAILURE, lease_until=None, next_attempt_at=None, updated_at=now,
                        last_error=LOST_ON_LAST_ATTEMPT))

    def record_attempts(self, results, now):
        """``[(notification_id, attempts, AttemptResult)]`` in one executemany UPDATE; a row changes only
        while it is still ``sending`` at that attempt (a receipt, an operator or a takeover keep theirs)."""
        table = notifications.c
        statement = (
            notifications.update()
            .where(table.id == sa.bindparam("b_id"), table.status == Status.SENDING,
                   table.attempts == sa.bindparam("b_attempts"))
            .values(status=sa.bindparam("b_status"), updated_at=now, lease_until=None,
                    last_error=sa.bindparam("b_error"),
                    provider=sa.func.coalesce(sa.bindparam("b_provider", type_=sa.String), table.provider),
                    sent_at=sa.bindparam("b_sent_at", type_=table.sent_at.type),
                    provider_reference=sa.bindparam("b_reference", type_=sa.String),
                    next_attempt_at=sa.bindparam("b_next", type_=table.next_attempt_at.type))
        )
        self._session.connection().execute(statement, [
            {"b_id": notification_id, "b_attempts": attempts, "b_status": result.status, "b_error": result.error,
             "b_provider": result.provider, "b_sent_at": result.sent_at, "b_reference": result.reference,
             "b_next": result.next_attempt_at}
            for notification_id, attempts, result in results
        ])

    def apply_receipt(self, provider, provider_reference, status, now, notification_id=None):
        """One UPDATE ... RETURNING: the SMS ``provider`` sent as ``provider_reference`` (and, when given,
        whose id is ``notification_id``), still in flight, takes the receipt's final ``status``.
        Returns ``(id, status)``, or None when no such message is in flight."""
        table = notifications.c
        conditions = [table.channel == "sms", table.provider == provider,
                      table.provider_reference == provider_reference, table.status.in_(RECEIPT_APPLIES_TO)]
        if notification_id:
            conditions.append(table.id == notification_id)
        one = sa.select(table.id).where(*conditions).limit(1)
        if _dialect(self._session) == "postgresql":
            one = one.with_for_update()
        values = {"status": status, "updated_at": now, "sent_at": sa.func.coalesce(table.sent_at, now),
                  "lease_until": None, "next_attempt_at": None}
        if status == Status.DELIVERED:
            values["delivered_at"] = now
        row = self._session.execute(
            notifications.update().where(table.id == one.scalar_subquery(), *conditions)
            .values(**values).returning(table.id, table.status)
        ).first()
        return (row[0], row[1]) if row is not None else None

    def prune_bodies(self, cutoff, pruned_body):
        """Blank subject and bodies of notifications that reached their recipient before ``cutoff``."""
        return self._session.execute(
            notifications.update()
            .where(notifications.c.status.in_((Status.SENT, Status.DELIVERED)), notifications.c.created_at < cutoff,
                   notifications.c.body != pruned_body)
            .values(body=pruned_body, html_body=None, subject=None)
        ).rowcount


class SqlContacts:
    """Who to write to about a dossier, learnt from the dossier's events."""

    def __init__(self, session):
        self._session = session

    def save(self, contact, now):
        """Upsert (one statement; concurrent events for one dossier do not collide). A missing procedure
        name keeps the one known."""
        values = {"dossier_code": contact.dossier_code, "procedure_name": contact.procedure_name,
                  "full_name": contact.full_name, "phone": contact.phone, "email": contact.email, "updated_at": now}
        statement = _insert(self._session)(contacts).values(**values)
        self._session.execute(statement.on_conflict_do_update(
            index_elements=[contacts.c.dossier_code],
            set_={
                "procedure_name": sa.func.coalesce(statement.excluded.procedure_name, contacts.c.procedure_name),
                "full_name": statement.excluded.full_name, "phone": statement.excluded.phone,
                "email": statement.excluded.email, "updated_at": statement.excluded.updated_at,
            },
        ))

    def get(self, dossier_code):
        row = self._session.execute(
            sa.select(contacts.c.dossier_code, contacts.c.procedure_name, contacts.c.full_name, contacts.c.phone,
                      contacts.c.email).where(contacts.c.dossier_code == dossier_code)).first()
        return Contact(*row) if row is not None else None


class SqlOutbox:
    """Events recorded in the caller's transaction, written together at commit (one multi-row INSERT).

    The rows are those of ``portal_shared.outbox.record_event``; on PostgreSQL
    the same statement queues the ``NOTIFY`` that wakes the relays of the
    other processes when (and only if) the transaction commits.
    """

    def __init__(self, session, call_id_stack=None):
        self._session = session
        self._headers = {"nameko.call_id_stack": list(call_id_stack)} if call_id_stack else None
        self._pending = []

    def add(self, event_type, payload, aggregate_key=None):
        if "event_id" not in payload:
            raise ValueError("event payload needs an event_id (use new_event)")
        self._pending.append({"event_id": payload["event_id"], "event_type": event_type,
                              "aggregate_key": aggregate_key, "payload": payload, "headers": self._headers})

    def flush(self):
        if not self._pending:
            return
        now = utcnow()
        statement = outbox_table.insert().values([{**row, "created_at": now, "attempts": 0} for row in self._pending])
        if _dialect(self._session) == "postgresql":
            statement = statement.returning(sa.func.pg_notify(NOTIFY_CHANNEL, ""))
        self._session.execute(statement)
        self._session.info[PENDING_FLAG] = True
        self._pending.clear()


class SqlInbox:
    def __init__(self, session):
        self._session = session

    def claim(self, consumer, event_id):
        """True the first time ``consumer`` sees ``event_id`` (its claim is part of this transaction)."""
        return claim_event(self._session, consumer, event_id)
