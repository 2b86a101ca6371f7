"""The SQL side of recording status changes on PostgreSQL: changes that arrive together (a group commit)."""
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from portal_shared.db import UnitOfWork
from portal_shared.timeutil import utcnow
from portal_sync.commands import RecordStatusChange, RecordStatusChanges
from portal_sync.messagebus import MessageBus
from portal_sync.unit_of_work import SqlUnitOfWork


def test_changes_together_are_one_upsert_and_a_dossier_named_twice_counts_from_its_earliest_change(sync_database):
    sync_database.truncate()
    engine = sync_database.engine
    database = UnitOfWork(sessionmaker(bind=engine, expire_on_commit=False), None)
    bus, now = MessageBus(SqlUnitOfWork(database)), utcnow()
    assert bus.handle(RecordStatusChange("c", "e-0", "D-1", now=now - timedelta(hours=1))) is True
    statements = []

    def record(_connection, _cursor, statement, *_args):
        statements.append(statement.split()[:3])

    together = [RecordStatusChange("c", f"e-{i}", f"D-{i % 3}", now=now + timedelta(seconds=i)) for i in range(1, 7)]
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        answers = bus.handle(RecordStatusChanges(tuple(together + [RecordStatusChange("c", "e-0", "D-1", now=now)])))
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert answers == [True] * 6 + [False]
    assert sorted(words[2] for words in statements if words[0] == "INSERT") == ["inbox_messages", "sync_dossiers"]
    with engine.connect() as connection:
        since = dict(connection.execute(sa.text("SELECT dossier_code, pending_since FROM sync_dossiers")).all())
    assert since == {"D-0": now + timedelta(seconds=3), "D-1": now - timedelta(hours=1),
                     "D-2": now + timedelta(seconds=2)}
    database.close()
