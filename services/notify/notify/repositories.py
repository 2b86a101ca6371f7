"""SQLAlchemy Core repositories of the notify service: notifications, contacts, the outbox and the inbox.

Only the unit of work (``unit_of_work.SqlUnitOfWork``) builds them; the use
cases see them through it. Every method is one statement (the hot paths: a
multi-row INSERT for an event's notifications and another for their delivery
messages, one conditional UPDATE ... RETURNING for a batch of claims, one
UPDATE for a batch of outcomes, one UPDATE ... RETURNING for a receipt),
written for PostgreSQL and for the SQLite of ``make run``.

The statements of the hot paths are built once (building and caching a
statement costs more CPU than PostgreSQL takes to run it); on PostgreSQL a
batch of claims or outcomes travels as arrays (``unnest``), so one statement
of one shape serves any batch size.
"""
import json
from dataclasses import replace

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from notify.domain.model import LOST_ON_LAST_ATTEMPT, RECEIPT_APPLIES_TO, Contact, Message, Notification, Status
from notify.orm import DossierContactRow, EarlyReceiptRow, NotificationRow
from portal_shared.outbox import NOTIFY_CHANNEL, PENDING_FLAG
from portal_shared.schema import inbox_table, outbox_table
from portal_shared.sqltypes import UtcDateTime, on_postgresql

notifications = NotificationRow.__table__
contacts = DossierContactRow.__table__
early_receipts = EarlyReceiptRow.__table__

NOTIFICATION_FIELDS = tuple(column.name for column in notifications.c)
# what the timer, a resend or an operator changes on a loaded notification
STATE_FIELDS = ("status", "attempts", "next_attempt_at", "lease_until", "last_error", "updated_at")


CLAIMED_COLUMNS = (notifications.c.id, notifications.c.channel, notifications.c.recipient, notifications.c.subject,
                   notifications.c.body, notifications.c.html_body, notifications.c.attempts)
INSERT_NOTIFICATION = notifications.insert()


def _sql_list(statuses):
    return ", ".join(f"'{status}'" for status in statuses)  # our own constants, never outside input


# the claims of a batch of delivery messages (see ``SqlNotifications.claim``); a notification named twice
# in one batch is claimed once
CLAIM_PG = sa.text(f"""
    UPDATE notifications AS n
    SET status = '{Status.SENDING}', attempts = n.attempts + 1, lease_until = :lease_until, updated_at = :now
    FROM unnest(CAST(:ids AS text[]), CAST(:attempts AS integer[]), CAST(:redelivered AS boolean[]))
         AS d(id, attempts, redelivered)
    WHERE n.id = d.id AND (
        (n.status IN ({_sql_list(Status.PENDING)}) AND n.attempts = d.attempts)
        OR (n.status = '{Status.SENDING}' AND n.attempts > d.attempts AND (d.redelivered OR n.lease_until < :now)))
    RETURNING n.id, n.channel, n.recipient, n.subject, n.body, n.html_body, n.attempts
""")
# the outcomes of a batch of attempts (see ``SqlNotifications.record_attempts``)
RECORD_PG = sa.text(f"""
    UPDATE notifications AS n
    SET status = o.status, updated_at = :now, lease_until = NULL, last_error = o.error,
        provider = coalesce(o.provider, n.provider), provider_reference = o.reference,
        sent_at = o.sent_at, next_attempt_at = o.next_at
    FROM unnest(CAST(:ids AS text[]), CAST(:attempts AS integer[]), CAST(:statuses AS text[]),
                CAST(:errors AS text[]), CAST(:providers AS text[]), CAST(:refs AS text[]),
                CAST(:sent AS timestamptz[]), CAST(:next AS timestamptz[]))
         AS o(id, attempts, status, error, provider, reference, sent_at, next_at)
    WHERE n.id = o.id AND n.status = '{Status.SENDING}' AND n.attempts = o.attempts
""")


def _apply_receipt(lock):
    table = notifications.c
    now = sa.bindparam("r_now", type_=table.updated_at.type)
    status = sa.bindparam("r_status", type_=sa.String)
    notification_id = sa.bindparam("r_id", type_=sa.String)
    in_flight = sa.and_(table.channel == "sms", table.status.in_(RECEIPT_APPLIES_TO),
                        table.provider == sa.bindparam("r_provider", type_=sa.String),
                        table.provider_reference == sa.bindparam("r_reference", type_=sa.String),
                        sa.or_(notification_id.is_(None), table.id == notification_id))
    one = sa.select(table.id).where(in_flight).limit(1)
    if lock:
        one = one.with_for_update()
    return (
        notifications.update().where(table.id == one.scalar_subquery(), in_flight)
        .values(status=status, updated_at=now, sent_at=sa.func.coalesce(table.sent_at, now), lease_until=None,
                next_attempt_at=None,
                delivered_at=sa.case((status == Status.DELIVERED, now), else_=table.delivered_at))
        .returning(table.id, table.status)
    )


APPLY_RECEIPT = {True: _apply_receipt(lock=True), False: _apply_receipt(lock=False)}  # by "on PostgreSQL"


def _upsert_contact(insert):
    """A missing procedure name keeps the one known."""
    statement = insert(contacts)
    return statement.on_conflict_do_update(
        index_elements=[contacts.c.dossier_code],
        set_={
            "procedure_name": sa.func.coalesce(statement.excluded.procedure_name, contacts.c.procedure_name),
            "full_name": statement.excluded.full_name, "phone": statement.excluded.phone,
            "email": statement.excluded.email, "updated_at": statement.excluded.updated_at,
        },
    ).returning(contacts.c.dossier_code)  # RETURNING: several rows go as one multi-row INSERT (insertmanyvalues)


UPSERT_CONTACT = {True: _upsert_contact(postgresql.insert), False: _upsert_contact(sqlite.insert)}


def _keep_early_receipt(insert):
    """A later receipt for the same message replaces the earlier one."""
    statement = insert(early_receipts)
    return statement.on_conflict_do_update(
        index_elements=[early_receipts.c.notification_id],
        set_={name: statement.excluded[name] for name in ("provider", "provider_reference", "status", "received_at")},
    )


KEEP_EARLY_RECEIPT = {True: _keep_early_receipt(postgresql.insert), False: _keep_early_receipt(sqlite.insert)}
# the early receipts of a batch of recorded outcomes, taken (deleted) in one statement
TAKE_EARLY_RECEIPTS = (
    early_receipts.delete()
    .where(early_receipts.c.notification_id.in_(sa.bindparam("ids", expanding=True)))
    .returning(early_receipts.c.notification_id, early_receipts.c.provider, early_receipts.c.provider_reference,
               early_receipts.c.status)
)


def _pg_array_type(column):
    if isinstance(column.type, UtcDateTime):
        return "timestamptz"
    return "integer" if isinstance(column.type, sa.Integer) else "text"


def _unnest(prefix, columns):
    """``unnest(CAST(:prefix_a AS text[]), ...) AS prefix(a, ...)``: one array parameter per column."""
    arrays = ", ".join(f"CAST(:{prefix}_{name} AS {kind}[])" for name, kind in columns)
    return f"unnest({arrays}) AS {prefix}({', '.join(name for name, _ in columns)})"


_NEW_NOTIFICATION_COLUMNS = tuple((column.name, _pg_array_type(column)) for column in notifications.c)
_SIGHTING_COLUMNS = (("ordinal", "integer"), ("consumer", "text"), ("event_id", "text"), ("dossier_code", "text"),
                     ("procedure_name", "text"), ("full_name", "text"), ("phone", "text"), ("email", "text"))
_OUTBOX_COLUMNS = (("ordinal", "integer"), ("event_id", "text"), ("event_type", "text"), ("aggregate_key", "text"),
                   ("payload", "text"), ("headers", "text"))
# ``record_first_sightings_pg``: the inbox claims, then, for the events whose claim is new, the applicants
# (the latest sighting of a dossier), the notifications and their delivery messages (outbox rows, in the
# order given, waking the relays on commit) in one statement. Claims and contacts go in sorted, so that
# concurrent statements over overlapping events or dossiers wait for each other instead of deadlocking.
RECORD_FIRST_SIGHTINGS_PG = sa.text(f"""
    WITH sighting AS (SELECT * FROM {_unnest("s", _SIGHTING_COLUMNS)}),
    claimed AS (
        INSERT INTO {inbox_table.name} (consumer, event_id, received_at)
        SELECT DISTINCT consumer, event_id, CAST(:now AS timestamptz) FROM sighting ORDER BY consumer, event_id
        ON CONFLICT DO NOTHING
        RETURNING consumer, event_id
    ),
    fresh AS (
        SELECT s.* FROM sighting AS s JOIN claimed AS c ON c.consumer = s.consumer AND c.event_id = s.event_id
    ),
    contact AS (
        INSERT INTO {contacts.name} AS k (dossier_code, procedure_name, full_name, phone, email, updated_at)
        SELECT * FROM (
            SELECT DISTINCT ON (dossier_code) dossier_code, procedure_name, full_name, phone, email,
                   CAST(:now AS timestamptz)
            FROM fresh ORDER BY dossier_code, ordinal DESC) AS latest
        ORDER BY dossier_code
        ON CONFLICT (dossier_code) DO UPDATE SET
            procedure_name = coalesce(EXCLUDED.procedure_name, k.procedure_name), full_name = EXCLUDED.full_name,
            phone = EXCLUDED.phone, email = EXCLUDED.email, updated_at = EXCLUDED.updated_at
    ),
    stored AS (
        INSERT INTO {notifications.name} ({", ".join(name for name, _ in _NEW_NOTIFICATION_COLUMNS)})
        SELECT n.* FROM {_unnest("n", _NEW_NOTIFICATION_COLUMNS)}
        WHERE n.event_id IN (SELECT event_id FROM fresh)
        RETURNING id
    ),
    queued AS (
        INSERT INTO {outbox_table.name} (event_id, event_type, aggregate_key, payload, headers, created_at, attempts)
        SELECT o.event_id, o.event_type, o.aggregate_key, CAST(o.payload AS json), CAST(o.headers AS json),
               CAST(:now AS timestamptz), 0
        FROM {_unnest("o", _OUTBOX_COLUMNS)}
        WHERE o.aggregate_key IN (SELECT id FROM stored)
        ORDER BY o.ordinal
        RETURNING pg_notify('{NOTIFY_CHANNEL}', '')
    )
    SELECT consumer, event_id, (SELECT count(*) FROM queued) AS queued FROM fresh
""")


def record_first_sightings_pg(session, sightings, outbox_rows, now):
    """``AbstractUnitOfWork.record_first_sightings`` on PostgreSQL, as one statement
    (``RECORD_FIRST_SIGHTINGS_PG``); ``outbox_rows`` (``portal_shared.outbox.outbox_row``) are the delivery
    messages of the sightings' notifications, each keyed by its notification. Returns a boolean per
    sighting, in order (a copy of a claim given twice is never new: only its first sighting is sent)."""
    claims = [(consumer, str(event_id)) for consumer, event_id in (sighting.claim for sighting in sightings)]
    firsts, names = {}, {}
    for claim, sighting in zip(claims, sightings):
        firsts.setdefault(claim, sighting)
    params = {"now": now}
    columns = {name: [] for name, _ in _SIGHTING_COLUMNS}
    for ordinal, ((consumer, event_id), sighting) in enumerate(firsts.items()):
        contact = sighting.contact
        # as ``SqlContacts.save_all``: a later sighting without a procedure name keeps the earlier one's
        procedure_name = names[contact.dossier_code] = contact.procedure_name or names.get(contact.dossier_code)
        for name, value in (("ordinal", ordinal), ("consumer", consumer), ("event_id", event_id),
                            ("dossier_code", contact.dossier_code), ("procedure_name", procedure_name),
                            ("full_name", contact.full_name), ("phone", contact.phone), ("email", contact.email)):
            columns[name].append(value)
    params.update({f"s_{name}": values for name, values in columns.items()})
    new = [notification for sighting in firsts.values() for notification in sighting.notifications]
    for name, _ in _NEW_NOTIFICATION_COLUMNS:
        params[f"n_{name}"] = [getattr(notification, name) for notification in new]
    keys = {notification.id for notification in new}
    outbox_rows = [row for row in outbox_rows if row["aggregate_key"] in keys]
    params["o_ordinal"] = list(range(len(outbox_rows)))
    for name in ("event_id", "event_type", "aggregate_key"):
        params[f"o_{name}"] = [row[name] for row in outbox_rows]
    params["o_payload"] = [json.dumps(row["payload"]) for row in outbox_rows]
    params["o_headers"] = [None if row["headers"] is None else json.dumps(row["headers"]) for row in outbox_rows]
    rows = session.execute(RECORD_FIRST_SIGHTINGS_PG, params).all()
    fresh = {(row.consumer, row.event_id) for row in rows}
    if any(row.queued for row in rows):
        session.info[PENDING_FLAG] = True  # the relay of this process is woken after the commit
    return [claim in fresh and firsts[claim] is sighting for claim, sighting in zip(claims, sightings)]


def notification_from_row(row):
    return Notification(**{name: row[name] for name in NOTIFICATION_FIELDS})


class SqlNotifications:
    def __init__(self, session):
        self._session = session
        self.seen = []  # every notification handed out or added: the unit of work collects their events
        self._loaded = []  # the ones ``save`` writes back
        self._new = []  # the ones ``save`` inserts

    def add(self, *new):
        """New notifications, inserted by ``save`` (all of a transaction's in one multi-row INSERT)."""
        self._new.extend(new)
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
        if on_postgresql(self._session):
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
        """Insert the notifications added in this transaction (one statement) and write back the state of
        those loaded (one executemany UPDATE)."""
        if self._new:
            self._session.execute(
                INSERT_NOTIFICATION,
                [{name: getattr(notification, name) for name in NOTIFICATION_FIELDS} for notification in self._new])
            self._new.clear()
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
        if on_postgresql(self._session):
            rows = self._session.execute(CLAIM_PG, {
                "ids": [d.notification_id for d in deliveries], "attempts": [d.attempts for d in deliveries],
                "redelivered": [d.redelivered for d in deliveries], "now": now, "lease_until": lease_until,
            })
        else:
            table = notifications.c
            conditions = []
            for delivery in deliveries:
                takeover = sa.and_(table.status == Status.SENDING, table.attempts > delivery.attempts,
                                   table.lease_until < now if not delivery.redelivered else sa.true())
                conditions.append(sa.and_(
                    table.id == delivery.notification_id,
                    sa.or_(sa.and_(table.status.in_(Status.PENDING), table.attempts == delivery.attempts), takeover),
                ))
            rows = self._session.execute(
                notifications.update().where(sa.or_(*conditions))
                .values(status=Status.SENDING, attempts=table.attempts + 1, lease_until=lease_until, updated_at=now)
                .returning(*CLAIMED_COLUMNS)
            )
        return [(Message(row[0], row[1], row[2], row[3], row[4], row[5]), row[6]) for row in rows]

    def give_up(self, ids, now):
        """Claimed past the last attempt (a takeover after the last try was lost): technical failure."""
        if ids:
            self._session.execute(
                notifications.update().where(notifications.c.id.in_(ids))
                .values(status=Status.TECHNICAL_FAILURE, lease_until=None, next_attempt_at=None, updated_at=now,
                        last_error=LOST_ON_LAST_ATTEMPT))

    def record_attempts(self, results, now):
        """``[(notification_id, attempts, AttemptResult)]`` in one statement; a row changes only while it is
        still ``sending`` at that attempt (a receipt, an operator or a takeover keep theirs)."""
        if on_postgresql(self._session):
            self._session.execute(RECORD_PG, {
                "ids": [i for i, _, _ in results], "attempts": [a for _, a, _ in results],
                "statuses": [r.status for _, _, r in results], "errors": [r.error for _, _, r in results],
                "providers": [r.provider for _, _, r in results], "refs": [r.reference for _, _, r in results],
                "sent": [r.sent_at for _, _, r in results], "next": [r.next_attempt_at for _, _, r in results],
                "now": now,
            })
            return
        table = notifications.c
        self._session.connection().execute(
            notifications.update()
            .where(table.id == sa.bindparam("b_id"), table.status == Status.SENDING,
                   table.attempts == sa.bindparam("b_attempts"))
            .values(status=sa.bindparam("b_status"), updated_at=now, lease_until=None,
                    last_error=sa.bindparam("b_error"),
                    provider=sa.func.coalesce(sa.bindparam("b_provider", type_=sa.String), table.provider),
                    provider_reference=sa.bindparam("b_reference", type_=sa.String),
                    sent_at=sa.bindparam("b_sent_at", type_=table.sent_at.type),
                    next_attempt_at=sa.bindparam("b_next", type_=table.next_attempt_at.type)),
            [{"b_id": notification_id, "b_attempts": attempts, "b_status": result.status, "b_error": result.error,
              "b_provider": result.provider, "b_reference": result.reference, "b_sent_at": result.sent_at,
              "b_next": result.next_attempt_at} for notification_id, attempts, result in results],
        )

    def apply_receipt(self, provider, provider_reference, status, now, notification_id=None):
        """One UPDATE ... RETURNING: the SMS ``provider`` sent as ``provider_reference`` (and, when given,
        whose id is ``notification_id``), still in flight, takes the receipt's final ``status``.
        Returns ``(id, status)``, or None when no such message is in flight."""
        row = self._session.execute(APPLY_RECEIPT[on_postgresql(self._session)], {
            "r_provider": provider, "r_reference": provider_reference, "r_id": notification_id or None,
            "r_status": status, "r_now": now,
        }).first()
        return (row[0], row[1]) if row is not None else None

    def keep_early_receipt(self, provider, provider_reference, status, notification_id, now):
        """Keep a receipt for the SMS ``notification_id`` when it is still ``sending`` (its outcome not recorded
        yet), to apply with that outcome; returns whether it was kept. Locks the row first (on PostgreSQL):
        an outcome being recorded meanwhile is committed before this looks, and the caller's second
        ``apply_receipt`` then finds it; one recorded after this commits finds the kept receipt."""
        table = notifications.c
        query = sa.select(table.status).where(table.id == notification_id, table.channel == "sms")
        on_pg = on_postgresql(self._session)
        status_now = self._session.execute(query.with_for_update() if on_pg else query).scalar()
        if status_now != Status.SENDING:
            return False
        self._session.execute(KEEP_EARLY_RECEIPT[on_pg], {
            "notification_id": notification_id, "provider": provider, "provider_reference": provider_reference,
            "status": status, "received_at": now})
        return True

    def take_early_receipts(self, notification_ids):
        """Delete and return ``[(notification_id, provider, provider_reference, status)]`` kept for these ids
        (one statement; in the usual case it finds none)."""
        if not notification_ids:
            return []
        return [tuple(row) for row in self._session.execute(TAKE_EARLY_RECEIPTS, {"ids": list(notification_ids)})]

    def prune_early_receipts(self, cutoff):
        """Receipts kept for a message whose outcome never came (kept before ``cutoff``)."""
        return self._session.execute(early_receipts.delete().where(early_receipts.c.received_at < cutoff)).rowcount

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
        """Upsert (one statement; concurrent events for one dossier do not collide)."""
        self.save_all([contact], now)

    def save_all(self, contacts_in_order, now):
        """Upsert several, in one statement: a dossier named twice keeps the later contact (with the
        earlier procedure name when the later has none). Rows go in by dossier code, so concurrent
        upserts of overlapping dossiers wait for each other instead of deadlocking."""
        latest = {}
        for contact in contacts_in_order:
            known = latest.get(contact.dossier_code)
            if known is not None and contact.procedure_name is None:
                contact = replace(contact, procedure_name=known.procedure_name)
            latest[contact.dossier_code] = contact
        if not latest:
            return
        self._session.execute(UPSERT_CONTACT[on_postgresql(self._session)], [
            {"dossier_code": contact.dossier_code, "procedure_name": contact.procedure_name,
             "full_name": contact.full_name, "phone": contact.phone, "email": contact.email, "updated_at": now}
            for _, contact in sorted(latest.items())])

    def get(self, dossier_code):
        row = self._session.execute(
            sa.select(contacts.c.dossier_code, contacts.c.procedure_name, contacts.c.full_name, contacts.c.phone,
                      contacts.c.email).where(contacts.c.dossier_code == dossier_code)).first()
        return Contact(*row) if row is not None else None
