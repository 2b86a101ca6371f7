"""The SQL repositories on SQLite (what ``make run`` uses): the delivery steps end to end, no server.

PostgreSQL runs the same use cases in the service and pipeline tests; its batch statements differ
(arrays through ``unnest``), SQLite's are the portable ones checked here.
"""
from datetime import timedelta

import eventlet
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from notify.commands import (
    ApplySmsReceipt,
    ClaimDeliveries,
    NotifyDossierStatusChanged,
    NotifyDossierStatusChanges,
    QueueDueNotifications,
    RecordOutcomes,
    ResendNotifications,
)
from notify.domain.model import Outcome, RetryPolicy, Status, attempt_result
from notify.messagebus import MessageBus
from notify.orm import Base, NotificationRow
from notify.unit_of_work import SqlUnitOfWork
from notify.use_cases import Delivery, Settings, list_notifications
from portal_shared.db import UnitOfWork, create_db_engine
from portal_shared.schema import outbox_table
from portal_shared.timeutil import utcnow

SETTINGS = Settings(policy=RetryPolicy(max_attempts=2, base_seconds=30), lease_seconds=40, batch_size=50)


@pytest.fixture
def engine():
    engine = create_db_engine("sqlite://")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def bus(engine):
    uow = SqlUnitOfWork(UnitOfWork(sessionmaker(bind=engine, expire_on_commit=False), relay=None))
    yield MessageBus(uow, settings=SETTINGS)
    uow.close()


def test_a_notification_is_recorded_claimed_sent_and_delivered_on_sqlite(bus, engine):
    now = utcnow()
    event = {"event_id": "e-1", "dossier_code": "D-1", "new_status": "accepted", "procedure_name": "Thủ tục",
             "applicant": {"full_name": "An", "phone": "0912345678", "email": "an@example.vn"}}
    sms_id, email_id = bus.handle(NotifyDossierStatusChanged("c", event, now=now))
    assert bus.handle(NotifyDossierStatusChanged("c", event, now=now)) is None
    with engine.connect() as connection:
        queued = [(row.event_type, row.payload["notification_id"])
                  for row in connection.execute(outbox_table.select().order_by(outbox_table.c.id))]
    assert queued == [("deliver_sms", sms_id), ("deliver_email", email_id)]

    claimed = bus.handle(ClaimDeliveries((Delivery(sms_id, 0), Delivery(email_id, 0), Delivery(sms_id, 0)), now=now))
    assert sorted(claimed) == sorted([sms_id, email_id]) and claimed[sms_id].message.recipient == "0912345678"
    assert bus.handle(ClaimDeliveries((Delivery(sms_id, 0),), now=now)) == {}
    bus.handle(RecordOutcomes(((claimed[sms_id], Outcome(Status.SENT, "esms", "SMS-9")),
                               (claimed[email_id], Outcome(Status.TEMPORARY_FAILURE, error="421"))), now=now))
    applied = bus.handle(ApplySmsReceipt("esms", "SMS-9", Status.DELIVERED, sms_id, now=now))
    assert (applied.notification_id, applied.status) == (sms_id, Status.DELIVERED)
    assert bus.handle(ApplySmsReceipt("esms", "SMS-9", Status.DELIVERED, now=now)) is None

    found = {n.channel: n for n in list_notifications(bus.uow, "D-1")}
    assert (found["sms"].status, found["sms"].provider_reference, found["sms"].delivered_at) == (
        Status.DELIVERED, "SMS-9", now)
    assert (found["email"].status, found["email"].next_attempt_at) == (Status.TEMPORARY_FAILURE,
                                                                       now + timedelta(seconds=30))
    # the retry is queued by the timer, fails on its last attempt, and an operator sends it again
    assert bus.handle(QueueDueNotifications(now=now + timedelta(seconds=31))) == [email_id]
    again = bus.handle(ClaimDeliveries((Delivery(email_id, 1),), now=now))[email_id]
    bus.handle(RecordOutcomes(((again, Outcome(Status.TEMPORARY_FAILURE, error="421")),), now=now))
    assert [n.id for n in bus.handle(ResendNotifications(reference="D-1", now=now))] == [email_id]
    assert {n.channel: (n.status, n.attempts) for n in list_notifications(bus.uow, "D-1")}["email"] == (
        Status.CREATED, 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request):
    """The SQL repositories on SQLite and on PostgreSQL (a fresh database migrated to head)."""
    if request.param == "sqlite":
        yield request.getfixturevalue("engine")
        return
    database = request.getfixturevalue("notify_database")
    database.truncate()
    yield database.engine
    database.truncate()


def _bus(engine):
    return MessageBus(SqlUnitOfWork(UnitOfWork(sessionmaker(bind=engine, expire_on_commit=False), relay=None)),
                      settings=SETTINGS)


def _claimed_sms(bus, now):
    event = {"event_id": "e-early", "dossier_code": "D-EARLY", "new_status": "accepted",
             "applicant": {"full_name": "An", "phone": "0912345678"}}
    [sms_id] = bus.handle(NotifyDossierStatusChanged("c", event, now=now))
    return sms_id, bus.handle(ClaimDeliveries((Delivery(sms_id, 0),), now=now))[sms_id]


def test_events_together_take_one_statement_per_table_and_each_applies_once(any_engine):
    """The group commit's write (``NotifyDossierStatusChanges``): on SQLite one multi-row INSERT each for
    the inbox, the contacts, the notifications and the outbox in one transaction; on PostgreSQL all four in
    one statement that commits by itself (no BEGIN, no COMMIT), however many events. Either way a repeat
    (already in the inbox, or a copy within the batch) writes nothing, and what is stored is the same."""
    import psycopg2.extensions

    relay = WakeCounter()
    bus = MessageBus(SqlUnitOfWork(UnitOfWork(sessionmaker(bind=any_engine, expire_on_commit=False), relay=relay)),
                     settings=SETTINGS)
    now = utcnow()
    on_postgresql = any_engine.dialect.name == "postgresql"

    def event(event_id, code, phone, name=None):
        return NotifyDossierStatusChanged("c", {
            "event_id": event_id, "dossier_code": code, "new_status": "accepted", "procedure_name": name,
            "applicant": {"full_name": "An", "phone": phone, "email": f"{event_id}@example.vn"}}, now=now)

    bus.handle(event("e-0", "D-1", "0912345678", name="Cấp Phiếu lý lịch tư pháp"))
    statements, states = [], []

    def record(_connection, cursor, statement, *_args):
        statements.append(statement.split()[:3])
        if on_postgresql:
            states.append(cursor.connection.get_transaction_status())

    together = ([event(f"e-{i}", f"D-{i % 4}", f"09123456{i:02d}") for i in range(1, 9)]
                + [event("e-0", "D-1", "x"), event("e-3", "D-3", "0987654321")])
    woken = relay.count
    sa.event.listen(any_engine, "after_cursor_execute", record)
    try:
        results = bus.handle(NotifyDossierStatusChanges(tuple(together)))
    finally:
        sa.event.remove(any_engine, "after_cursor_execute", record)
    assert [len(ids) for ids in results[:-2]] == [2] * 8 and results[-2:] == [None, None]
    assert relay.count == woken + 1  # the delivery messages leave as soon as they are committed
    if on_postgresql:
        assert [words[0] for words in statements] == ["WITH"]
        assert states == [psycopg2.extensions.TRANSACTION_STATUS_IDLE]  # committed by itself
    else:
        inserts = [words[2] for words in statements if words[0] == "INSERT"]
        assert sorted(inserts) == ["dossier_contacts", "inbox_messages", "notifications", "outbox_messages"]
    with any_engine.connect() as connection:
        contacts = dict(connection.execute(sa.text("SELECT dossier_code, phone FROM dossier_contacts")).all())
        name = connection.execute(sa.text(
            "SELECT procedure_name FROM dossier_contacts WHERE dossier_code = 'D-1'")).scalar()
        table = NotificationRow.__table__
        stored = connection.execute(sa.select(table.c.event_id, table.c.channel, table.c.recipient, table.c.status,
                                              table.c.attempts, table.c.created_at)).all()
        queued = [(row.event_type, row.aggregate_key, row.payload["notification_id"], row.payload["attempts"])
                  for row in connection.execute(outbox_table.select().order_by(outbox_table.c.id))]
        claims = connection.execute(sa.text("SELECT count(*) FROM inbox_messages")).scalar()
    assert contacts == {"D-0": "0912345608", "D-1": "0912345605", "D-2": "0912345606", "D-3": "0912345607"}
    assert name == "Cấp Phiếu lý lịch tư pháp"  # kept: none of the later events named the procedure
    assert claims == 9 and len(stored) == 18
    assert {(row.event_id, row.channel) for row in stored} == {
        (f"e-{i}", channel) for i in range(9) for channel in ("sms", "email")}
    assert {row.recipient for row in stored if row.event_id == "e-3"} == {"0912345603", "e-3@example.vn"}
    assert {(row.status, row.attempts, row.created_at) for row in stored} == {("created", 0, now)}
    ids = [ids for ids in results[:-2]]
    assert queued[2:] == [(f"deliver_{channel}", notification_id, notification_id, 0)
                          for sms_id, email_id in ids
                          for channel, notification_id in (("sms", sms_id), ("email", email_id))]
    bus.uow.close()


class WakeCounter:
    count = 0

    def wake(self):
        self.count += 1


def test_a_receipt_before_the_outcome_is_kept_and_applied_with_it(any_engine):
    bus, now = _bus(any_engine), utcnow()
    sms_id, claimed = _claimed_sms(bus, now)
    kept = bus.handle(ApplySmsReceipt("esms", "SMS-E1", Status.DELIVERED, sms_id, now=now))
    assert (kept.status, kept.kept_for_outcome) == (Status.SENDING, True)
    assert bus.handle(ApplySmsReceipt("esms", "SMS-E1", Status.DELIVERED, "not-a-message", now=now)) is None
    bus.handle(RecordOutcomes(((claimed, Outcome(Status.SENT, "esms", "SMS-E1")),), now=now + timedelta(seconds=1)))
    [sms] = list_notifications(bus.uow, "D-EARLY")
    assert (sms.status, sms.provider_reference, sms.delivered_at) == (Status.DELIVERED, "SMS-E1",
                                                                      now + timedelta(seconds=1))
    with any_engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM early_receipts")).scalar() == 0
    bus.uow.close()


def test_a_receipt_arriving_while_the_outcome_commits_is_applied_once_it_has(notify_database):
    """PostgreSQL: the outcome's transaction holds the row; the receipt waits for it, then applies."""
    notify_database.truncate()
    engine, now = notify_database.engine, utcnow()
    bus = _bus(engine)
    sms_id, claimed = _claimed_sms(bus, now)
    recording = _bus(engine)
    with recording.uow:
        recording.uow.notifications.record_attempts([(sms_id, claimed.attempts, _sent("SMS-E2", now))], now)
        receipt = eventlet.spawn(bus.handle, ApplySmsReceipt("esms", "SMS-E2", Status.DELIVERED, sms_id, now=now))
        eventlet.sleep(0.3)  # the receipt is waiting on the row now
        recording.uow.commit()
    applied = receipt.wait()
    assert (applied.status, applied.kept_for_outcome) == (Status.DELIVERED, False)
    [sms] = list_notifications(bus.uow, "D-EARLY")
    assert sms.status == Status.DELIVERED
    bus.uow.close()
    recording.uow.close()
    notify_database.truncate()


def _sent(reference, now):
    return attempt_result(Outcome(Status.SENT, "esms", reference), 1, SETTINGS.policy, now)


def test_a_claim_commits_by_itself_with_no_transaction_around_it(notify_database):
    """``ClaimDeliveries`` on PostgreSQL: its one UPDATE is sent with no BEGIN before it (psycopg2 in
    autocommit), so the claim is visible to another connection as soon as it returns."""
    import psycopg2.extensions

    notify_database.truncate()
    engine, now = notify_database.engine, utcnow()
    bus = _bus(engine)
    event = {"event_id": "e-auto", "dossier_code": "D-AUTO", "new_status": "accepted",
             "applicant": {"full_name": "An", "phone": "0912345678"}}
    [sms_id] = bus.handle(NotifyDossierStatusChanged("c", event, now=now))
    states = []

    def record(_connection, cursor, statement, *_args):
        if statement.lstrip().upper().startswith("UPDATE"):
            states.append(cursor.connection.get_transaction_status())

    sa.event.listen(engine, "after_cursor_execute", record)
    try:
        claimed = bus.handle(ClaimDeliveries((Delivery(sms_id, 0),), now=now))
    finally:
        sa.event.remove(engine, "after_cursor_execute", record)
    assert list(claimed) == [sms_id]
    assert states == [psycopg2.extensions.TRANSACTION_STATUS_IDLE]  # committed by itself, nothing left open
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT status FROM notifications WHERE id = :id"),
                                  {"id": sms_id}).scalar() == "sending"
    bus.uow.close()
    notify_database.truncate()
