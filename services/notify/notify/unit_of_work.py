"""The notify unit of work: one transaction, the repositories inside it, the events it raised.

``with uow: ... uow.commit()`` — leaving the block without ``commit()`` rolls
back. ``commit()`` writes back the notifications ``uow.notifications`` handed
out, passes their new events through the bus's in-transaction handlers (each
``DeliveryQueued`` becomes a delivery message in the outbox, all of them one
multi-row INSERT) and commits; the mechanics are ``portal_shared.unit_of_work``'s.
"""
from notify import messagebus
from notify.repositories import SqlContacts, SqlNotifications
from portal_shared import unit_of_work
from portal_shared.repositories import SqlInbox, SqlOutbox


class AbstractUnitOfWork(unit_of_work.AbstractUnitOfWork):
    notifications = contacts = outbox = inbox = None
    in_transaction = messagebus.IN_TRANSACTION

    def _seen(self):
        return self.notifications.seen

    def _save(self, seen):
        self.notifications.save()


class SqlUnitOfWork(unit_of_work.DatabaseUnitOfWork, AbstractUnitOfWork):
    """Over a ``portal_shared.db.UnitOfWork`` (its session, and the relay woken after a commit that
    recorded events): a worker's ``Database`` dependency, or one the delivery pipeline keeps."""

    def _open(self, session):
        self.notifications = SqlNotifications(session)
        self.contacts = SqlContacts(session)
        self.outbox = SqlOutbox(session, self._call_id_stack)
        self.inbox = SqlInbox(session)

    def close(self):
        self._database.close()
