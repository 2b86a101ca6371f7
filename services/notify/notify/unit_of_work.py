"""The notify unit of work: one transaction, the repositories inside it, the events it raised.

``with uow: ... uow.commit()`` — leaving the block without ``commit()`` rolls
back. ``commit()`` writes back the notifications the repository handed out,
passes their new events through the bus's in-transaction handlers (each
``DeliveryQueued`` becomes a delivery message in the outbox), writes the
outbox rows in one statement, commits, and keeps the events for the bus
(``collect_new_events``). Shaped as ``payment.unit_of_work``, so both can
share one framework-free base.
"""
import abc

from notify import messagebus
from notify.repositories import SqlContacts, SqlInbox, SqlNotifications, SqlOutbox


class AbstractUnitOfWork(abc.ABC):
    notifications = contacts = outbox = inbox = None

    def __init__(self):
        self._committed_events = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.rollback()

    def commit(self):
        raised = []
        for notification in self.notifications.seen:
            raised.extend(notification.events)
            notification.events.clear()
        self.notifications.save()
        for event in raised:
            messagebus.handle_in_transaction(event, self)
        self.outbox.flush()
        self._commit()
        self._committed_events.extend(raised)

    def collect_new_events(self):
        """Events of the transactions committed since the last call, in the order raised."""
        events, self._committed_events = self._committed_events, []
        return events

    @abc.abstractmethod
    def _commit(self):
        ...

    @abc.abstractmethod
    def rollback(self):
        ...


class SqlUnitOfWork(AbstractUnitOfWork):
    """Over a ``portal_shared.db.UnitOfWork`` (its session, and the relay woken after a commit that
    recorded events): a worker's ``Database`` dependency, or one the delivery pipeline keeps."""

    def __init__(self, database, call_id_stack=None):
        super().__init__()
        self._database = database
        self._call_id_stack = call_id_stack

    def __enter__(self):
        session = self._database.session
        self.notifications = SqlNotifications(session)
        self.contacts = SqlContacts(session)
        self.outbox = SqlOutbox(session, self._call_id_stack)
        self.inbox = SqlInbox(session)
        return super().__enter__()

    def _commit(self):
        self._database.commit()

    def rollback(self):
        self._database.session.rollback()

    def close(self):
        self._database.close()
