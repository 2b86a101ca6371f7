"""The portal_sync unit of work: one transaction and the repositories inside it.

``with uow: ... uow.commit()`` — leaving the block without ``commit()`` rolls
back; ``commit()`` writes what changed of the records and the backfill job the
repositories handed out, then commits. The mechanics are
``portal_shared.unit_of_work``'s; portal_sync publishes no events.
"""
from portal_shared import unit_of_work
from portal_shared.repositories import SqlInbox
from portal_sync.repositories import SqlFees, SqlJobs, SqlRecords


class AbstractUnitOfWork(unit_of_work.AbstractUnitOfWork):
    records = fees = jobs = inbox = None

    def _save(self, seen):
        self.records.save()
        self.jobs.save()


class SqlUnitOfWork(unit_of_work.DatabaseUnitOfWork, AbstractUnitOfWork):
    """Over a ``portal_shared.db.UnitOfWork`` (a worker's, the delivery thread's or a tool's)."""

    def _open(self, session):
        self.records = SqlRecords(session)
        self.fees = SqlFees(session)
        self.jobs = SqlJobs(session)
        self.inbox = SqlInbox(session)
