"""Transactional outbox: events are rows written with the state change.

``record_event`` adds an event to the caller's session, so it commits or rolls
back with the change that caused it; on PostgreSQL the same statement queues a
``NOTIFY`` that the server delivers when (and only if) the transaction commits.
The relay (``portal_shared.relay``, run in a service by
``portal_shared.extensions.relay``) publishes the committed rows.
"""
import uuid

import sqlalchemy as sa

from portal_shared.schema import outbox_table
from portal_shared.timeutil import isoformat, utcnow

PENDING_FLAG = "outbox_pending"  # in ``session.info``: the transaction recorded events
NOTIFY_CHANNEL = "portal_outbox"  # one per database, hence per service


def new_event(**fields):
    """An event envelope: a fresh ``event_id`` and ``occurred_at`` plus the fields."""
    return {"event_id": str(uuid.uuid4()), "occurred_at": isoformat(utcnow()), **fields}


def record_event(session, event_type, payload, aggregate_key=None, call_id_stack=None):
    """Write an event into the outbox inside the caller's transaction."""
    if "event_id" not in payload:
        raise ValueError("event payload needs an event_id (use new_event)")
    values = {
        "event_id": payload["event_id"],
        "event_type": event_type,
        "aggregate_key": aggregate_key,
        "payload": payload,
        "headers": {"nameko.call_id_stack": list(call_id_stack)} if call_id_stack else None,
        "created_at": utcnow(),
        "attempts": 0,
    }
    session.execute(_insert_statement(session, values))
    session.info[PENDING_FLAG] = True


def _insert_statement(session, values):
    if session.get_bind().dialect.name != "postgresql":
        return outbox_table.insert().values(**values)
    # INSERT ... SELECT ... FROM pg_notify(): the row and the wake-up in one round trip. The
    # server sends the notification on commit, folds repeats within a transaction, and drops
    # it on rollback.
    row = sa.select(*[sa.cast(sa.literal(value, outbox_table.c[name].type), outbox_table.c[name].type)
                      for name, value in values.items()])
    return outbox_table.insert().from_select(list(values), row.select_from(sa.func.pg_notify(NOTIFY_CHANNEL, "")))
