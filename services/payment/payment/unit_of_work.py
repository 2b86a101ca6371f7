"""The payment unit of work: one transaction, the repositories inside it, the events it raised.

``with uow: ... uow.commit()`` — leaving the block without ``commit()`` rolls
back. ``commit()`` stores the aggregates the repositories handed out, passes
their new events through the bus's in-transaction handlers (the outbox record,
in the same transaction), commits, and keeps the events for the bus to
dispatch afterwards (``collect_new_events``). ``flush()`` does the first two
only, for a long transaction that stores its work a chunk at a time.

``JoinedUnitOfWork`` is the repositories inside a transaction that someone
else owns (a reconciliation run): it only flushes.
"""
import abc

from payment import messagebus
from payment.repositories import SqlCharges, SqlInbox, SqlOutbox, SqlPayments


class AbstractUnitOfWork(abc.ABC):
    payments = charges = outbox = inbox = None

    def __init__(self):
        self._flushed_events = []
        self._committed_events = []

    def __enter__(self):
        self._flushed_events = []
        return self

    def __exit__(self, *exc_info):
        self._flushed_events = []
        self.rollback()

    def flush(self):
        """Store the aggregates handed out so far and record their new events, in this transaction."""
        seen = list(self.payments.seen)
        raised = [event for payment in seen for event in payment.events]
        for payment in seen:
            payment.events.clear()
        self.payments.save(seen)
        self.charges.save(list(self.charges.seen))
        for event in raised:
            messagebus.handle_in_transaction(event, self)
        self._flushed_events.extend(raised)

    def commit(self):
        self.flush()
        self._commit()
        self._committed_events.extend(self._flushed_events)
        self._flushed_events = []

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
    """Over a worker's ``portal_shared.db.UnitOfWork`` (its session, and the relay woken after a commit)."""

    def __init__(self, database, call_id_stack=None):
        super().__init__()
        self._database = database
        self._call_id_stack = call_id_stack

    def __enter__(self):
        _open_repositories(self, self._database.session, self._call_id_stack)
        return super().__enter__()

    def _commit(self):
        self._database.commit()

    def rollback(self):
        self._database.session.rollback()


class JoinedUnitOfWork(AbstractUnitOfWork):
    """The repositories inside a transaction that its owner commits or rolls back as a whole.

    ``session`` is that transaction's session. ``flush()`` stores the
    aggregates and records their events in it; ``commit()`` and ``rollback()``
    are refused, being the owner's.
    """

    def __init__(self, session, call_id_stack=None):
        super().__init__()
        _open_repositories(self, session, call_id_stack)

    def _commit(self):
        raise TypeError("this transaction is its owner's to commit: flush() what is done")

    def rollback(self):
        raise TypeError("this transaction is its owner's to roll back")


def _open_repositories(uow, session, call_id_stack):
    uow.charges = SqlCharges(session)
    uow.payments = SqlPayments(session, uow.charges)
    uow.outbox = SqlOutbox(session, call_id_stack)
    uow.inbox = SqlInbox(session)
