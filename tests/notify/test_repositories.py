"""The SQL repositories on SQLite (what ``make run`` uses): the delivery steps end to end, no server.

PostgreSQL runs the same use cases in the service and pipeline tests; its batch statements differ
(arrays through ``unnest``), SQLite's are the portable ones checked here.
"""
from datetime import timedelta

import pytest
from sqlalchemy.orm import sessionmaker

from notify.commands import (
    ApplySmsReceipt,
    ClaimDeliveries,
    NotifyDossierStatusChanged,
    QueueDueNotifications,
    RecordOutcomes,
    ResendNotifications,
)
from notify.domain.model import Outcome, RetryPolicy, Status
from notify.messagebus import MessageBus
from notify.orm import Base
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
