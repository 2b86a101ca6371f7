"""Old message texts are personal data kept no longer than needed.

A notification that reached its recipient (``sent`` or ``delivered``) keeps
its row (who, when, which template, which provider: the audit trail) but
loses its rendered subject and bodies once older than
``NOTIFY_BODY_RETENTION_DAYS`` (default 90). Resendable notifications keep
their text: an operator resend sends exactly what was decided then.
"""
from datetime import timedelta

import sqlalchemy as sa

from notify.domain.model import Status
from notify.orm import NotificationRow
from portal_shared.timeutil import utcnow

PRUNED_BODY = ""


def prune_bodies(uow, retention_days, now=None):
    """Blank the texts of delivered notifications older than the retention; return how many."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    with uow.transaction() as session:
        result = session.execute(
            sa.update(NotificationRow)
            .where(NotificationRow.status.in_((Status.SENT, Status.DELIVERED)), NotificationRow.created_at < cutoff,
                   NotificationRow.body != PRUNED_BODY)
            .values(body=PRUNED_BODY, html_body=None, subject=None)
            .execution_options(synchronize_session=False)
        )
    return result.rowcount
