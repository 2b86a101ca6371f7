"""Transactional outbox: events are rows written with the state change.

``record_events`` adds events to the caller's session, so they commit or roll
back with the change that caused it; on PostgreSQL the same statement queues a
``NOTIFY`` that the server delivers when (and only if) the transaction commits.
The relay (``portal_shared.relay``, run in a service by
``portal_shared.extensions.relay``) publishes the committed rows.
"""
import uuid

import sqlalchemy as sa

from portal_shared.schema import outbox_table
from portal_shared.sqltypes import on_postgresql
from portal_shared.timeutil import isoformat, utcnow

PENDING_FLAG = "outbox_pending"  # in ``session.info``: the transaction recorded events
NOTIFY_CHANNEL = "portal_outbox"  # one per database, hence per service


def new_event(**fields):
    """An event envelope: a fresh ``event_id`` and ``occurred_at`` plus the fields."""
    return {"event_id": str(uuid.uuid4()), "occurred_at": isoformat(utcnow()), **fields}


# On PostgreSQL the INSERT's RETURNING queues the wake-up: the server sends the notification on
# commit, folds repeats within a transaction, and drops it on rollback. Built once: one statement
# of one shape for one row or many (SQLAlchemy sends several rows as one multi-row INSERT).
INSERT_OUTBOX = {"postgresql": outbox_table.insert().returning(sa.func.pg_notify(NOTIFY_CHANNEL, "")),
                 "other": outbox_table.insert()}


def outbox_row(event_type, payload, aggregate_key=None, call_id_stack=None, headers=None):
    """The outbox row of one event (written by ``record_events``); ``headers`` are extra AMQP headers
    (an event's signature, ``portal_shared.event_signing``)."""
    if "event_id" not in payload:
        raise ValueError("event payload needs an event_id (use new_event)")
    headers = dict(headers or {})
    if call_id_stack:
        headers["nameko.call_id_stack"] = list(call_id_stack)
    return {
        "event_id": payload["event_id"],
        "event_type": event_type,
        "aggregate_key": aggregate_key,
        "payload": payload,
        "headers": headers or None,
    }


def record_events(session, rows):
    """Write outbox rows (``outbox_row``) inside the caller's transaction, in one statement."""
    if not rows:
        return
    now = utcnow()
    dialect = "postgresql" if on_postgresql(session) else "other"
    session.execute(INSERT_OUTBOX[dialect], [{**row, "created_at": now, "attempts": 0} for row in rows])
    session.info[PENDING_FLAG] = True
