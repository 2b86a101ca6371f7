"""Retry policy, receipt mapping and the database guard against a second message per event."""
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from notify.domain.model import Notification, Outcome, RetryPolicy, Status, status_after_attempt
from notify.rendering import render_sms
from notify.repositories import SqlNotifications
from notify.sms import status_from_esms_receipt
from portal_shared.timeutil import utcnow


def test_backoff_doubles_and_is_bounded():
    policy = RetryPolicy(max_attempts=5, base_seconds=30, max_delay_seconds=100)
    assert [policy.delay_after(n) for n in (1, 2, 3, 4)] == [timedelta(seconds=s) for s in (30, 60, 100, 100)]
    assert not policy.exhausted(4) and policy.exhausted(5)


def test_a_temporary_failure_on_the_last_attempt_is_technical():
    policy = RetryPolicy(max_attempts=3)
    temporary = Outcome(Status.TEMPORARY_FAILURE, error="x")
    assert status_after_attempt(temporary, 2, policy) == Status.TEMPORARY_FAILURE
    assert status_after_attempt(temporary, 3, policy) == Status.TECHNICAL_FAILURE
    assert status_after_attempt(Outcome(Status.SENT, "esms"), 3, policy) == Status.SENT
    assert status_after_attempt(Outcome(Status.PERMANENT_FAILURE), 1, policy) == Status.PERMANENT_FAILURE


def test_esms_receipt_statuses():
    assert status_from_esms_receipt("5", "0", "1") == Status.DELIVERED
    assert status_from_esms_receipt(5) == Status.DELIVERED
    assert status_from_esms_receipt("5", "1", "0") == Status.PERMANENT_FAILURE
    assert status_from_esms_receipt("4") == Status.PERMANENT_FAILURE
    assert status_from_esms_receipt("2") is None
    assert status_from_esms_receipt("abc") is None


def test_one_event_cannot_have_two_messages_on_one_channel(notify_database):
    notify_database.truncate()
    session = sessionmaker(bind=notify_database.engine)()
    event_id = str(uuid.uuid4())
    params = {"dossier_code": "UQ-1", "procedure_name": "Thủ tục"}
    text = render_sms("accepted", params)
    repository = SqlNotifications(session)
    try:
        repository.add(Notification.create("sms", "0912345678", "accepted", "UQ-1", text, utcnow(), event_id))
        repository.add(Notification.create("email", "a@example.vn", "accepted", "UQ-1", text, utcnow(), event_id))
        repository.save()  # what the unit of work's commit does: the added ones go in, in one INSERT
        session.commit()
        with pytest.raises(sa.exc.IntegrityError):
            repository.add(Notification.create("sms", "0912345678", "accepted", "UQ-1", text, utcnow(), event_id))
            repository.save()
        session.rollback()
    finally:
        session.close()
