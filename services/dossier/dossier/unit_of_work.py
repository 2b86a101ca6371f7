"""The dossier unit of work: one transaction, the repositories inside it, the events it raised.

``with uow: ... uow.commit()`` — leaving the block without ``commit()`` rolls
back. ``commit()`` stores the dossiers ``uow.dossiers`` handed out (their
changed fields and new history entries), records each ``StatusChanged`` in the
outbox through the bus's in-transaction handlers, and commits; the mechanics
are ``portal_shared.unit_of_work``'s.
"""
from dossier import messagebus
from dossier.repositories import SqlDossiers
from portal_shared import unit_of_work
from portal_shared.repositories import SqlInbox, SqlOutbox


class AbstractUnitOfWork(unit_of_work.AbstractUnitOfWork):
    dossiers = outbox = inbox = None
    in_transaction = messagebus.IN_TRANSACTION

    def _seen(self):
        return self.dossiers.seen

    def _save(self, seen):
        self.dossiers.save()


class SqlUnitOfWork(unit_of_work.DatabaseUnitOfWork, AbstractUnitOfWork):
    """Over a worker's ``portal_shared.db.UnitOfWork`` (its session, and the relay woken after a commit)."""

    def _open(self, session):
        self.dossiers = SqlDossiers(session)
        self.outbox = SqlOutbox(session, self._call_id_stack)
        self.inbox = SqlInbox(session)
