"""Consumer inbox: each event takes effect at most once per consumer.

``claim_event`` inserts ``(consumer, event_id)`` inside the handler's own
transaction. The first transaction to insert wins; a redelivery, or the same
event reaching another process of the service, finds the row (on PostgreSQL a
concurrent insert waits for the first to commit) and is skipped. If the
handler fails, its transaction rolls back and the claim goes with it, so a
retry can take effect.
"""
from sqlalchemy.dialects import postgresql, sqlite

from portal_shared.schema import inbox_table
from portal_shared.sqltypes import on_postgresql
from portal_shared.timeutil import utcnow


# built once per dialect: every event handler runs it, and building a statement costs more than running it
_CLAIMS = {
    name: insert(inbox_table).on_conflict_do_nothing().returning(inbox_table.c.consumer, inbox_table.c.event_id)
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


def claim_event(session, consumer, event_id):
    """Return True if this consumer has not yet processed ``event_id``."""
    return bool(claim_events(session, [(consumer, event_id)]))


def claim_events(session, claims):
    """The ``(consumer, event_id)`` pairs of ``claims`` seen for the first time, as a set: one INSERT for all.

    The rows go in sorted, so two transactions claiming overlapping sets wait for each other instead of
    deadlocking; a pair given twice is claimed once."""
    now = utcnow()
    wanted = sorted({(consumer, str(event_id)) for consumer, event_id in claims})
    if not wanted:
        return set()
    statement = _CLAIMS["postgresql" if on_postgresql(session) else "sqlite"]
    rows = session.execute(statement, [{"consumer": consumer, "event_id": event_id, "received_at": now}
                                       for consumer, event_id in wanted]).all()
    return {(row.consumer, row.event_id) for row in rows}


def prune_inbox(engine, retention, now=None):
    """Delete claims older than ``retention`` (a timedelta); return how many.

    The retention must outlast any redelivery or dead-letter replay of an event
    (default 30 days, ``INBOX_RETENTION_HOURS``): past it, a replayed event would
    take effect again.
    """
    cutoff = (now or utcnow()) - retention
    with engine.begin() as connection:
        result = connection.execute(inbox_table.delete().where(inbox_table.c.received_at < cutoff))
    return result.rowcount
