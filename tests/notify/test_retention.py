"""Texts of delivered notifications are blanked after NOTIFY_BODY_RETENTION_DAYS; resendable ones keep theirs."""
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from notify.commands import PruneBodies
from notify.messagebus import MessageBus
from notify.orm import NotificationRow
from notify.unit_of_work import SqlUnitOfWork
from portal_shared.db import UnitOfWork
from portal_shared.timeutil import utcnow


def test_old_delivered_texts_are_blanked_and_the_rest_kept(notify_database):
    notify_database.truncate()
    now = utcnow()
    rows = {
        "old-sent": ("sent", now - timedelta(days=91)),
        "old-delivered": ("delivered", now - timedelta(days=200)),
        "old-failed": ("technical_failure", now - timedelta(days=200)),
        "recent-sent": ("sent", now - timedelta(days=10)),
    }
    with notify_database.engine.begin() as connection:
        for key, (status, created) in rows.items():
            connection.execute(sa.insert(NotificationRow).values(
                id=key, channel="email", recipient="an@example.vn", template="processed", reference="R-1",
                subject="Hồ sơ R-1", body="Kính gửi Nguyễn Văn An", html_body="<p>An</p>", status=status,
                attempts=1, created_at=created, updated_at=created))
    bus = MessageBus(SqlUnitOfWork(UnitOfWork(sessionmaker(bind=notify_database.engine), relay=None)))
    assert bus.handle(PruneBodies(90, now=now)) == 2
    assert bus.handle(PruneBodies(90, now=now)) == 0  # nothing twice
    with notify_database.engine.connect() as connection:
        found = {row.id: row for row in connection.execute(sa.select(NotificationRow.__table__))}
    for key in ("old-sent", "old-delivered"):
        assert (found[key].body, found[key].html_body, found[key].subject) == ("", None, None)
        assert found[key].recipient == "an@example.vn" and found[key].status == rows[key][0]
    for key in ("old-failed", "recent-sent"):
        assert found[key].body == "Kính gửi Nguyễn Văn An"
