"""The payment unit of work: one transaction, the repositories inside it, the events it raised.

``with uow: ... uow.commit()`` — leaving the block without ``commit()`` rolls
back. ``commit()`` stores the aggregates the repositories handed out, passes
their new events through the bus's in-transaction handlers (the outbox record,
in the same transaction), commits, and keeps the events for the bus to
dispatch afterwards (``collect_new_events``).
"""
import abc

from payment import messagebus
from payment.repositories import SqlCharges, SqlInbox, SqlOutbox, SqlPayments


class AbstractUnitOfWork(abc.ABC):
    payments = charges = outbox = inbox = None

    def __init__(self):
        self._committed_events = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.rollback()

    def commit(self):
        seen = list(self.payments.seen)
        raised = [event for payment in seen for event in payment.events]
        for payment in seen:
            payment.events.clear()
        self.payments.save(seen)
        self.charges.save(list(self.charges.seen))
        for event in raised:
            messagebus.handle_in_transaction(event, self)
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
    """Over a worker's ``portal_shared.db.UnitOfWork`` (its session, and the relay woken after a commit)."""

    def __init__(self, database, call_id_stack=None):
        super().__init__()
        self._database = database
        self._call_id_stack = call_id_stack

    def __enter__(self):
        session = self._database.session
        self.charges = SqlCharges(session)
        self.payments = SqlPayments(session, self.charges)
        self.outbox = SqlOutbox(session, self._call_id_stack)
        self.inbox = SqlInbox(session)
        return super().__enter__()

    def _commit(self):
        self._database.commit()

    def rollback(self):
        self._database.session.rollback()
