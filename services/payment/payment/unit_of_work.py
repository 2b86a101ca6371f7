"""The payment unit of work: one transaction, the repositories inside it, the events it raised.

``with uow: ... uow.commit()`` — leaving the block without ``commit()`` rolls
back. ``commit()`` stores the aggregates the repositories handed out, passes
their new events through the bus's in-transaction handlers (the outbox record,
in the same transaction), commits, and keeps the events for the bus to
dispatch afterwards (``collect_new_events``). ``flush()`` does the first two
only, for a long transaction that stores its work a chunk at a time. The
mechanics are ``portal_shared.unit_of_work``'s.

``JoinedUnitOfWork`` is the repositories inside a transaction that someone
else owns (a reconciliation run): it only flushes.
"""
from payment import messagebus
from payment.repositories import SqlCharges, SqlPayments
from portal_shared import unit_of_work
from portal_shared.repositories import SqlInbox, SqlOutbox


class AbstractUnitOfWork(unit_of_work.AbstractUnitOfWork):
    payments = charges = outbox = inbox = None
    in_transaction = messagebus.IN_TRANSACTION

    def _seen(self):
        return self.payments.seen

    def _save(self, seen):
        self.payments.save(seen)
        self.charges.save(list(self.charges.seen))


class SqlUnitOfWork(unit_of_work.DatabaseUnitOfWork, AbstractUnitOfWork):
    """Over a worker's ``portal_shared.db.UnitOfWork`` (its session, and the relay woken after a commit)."""

    def _open(self, session):
        _open_repositories(self, session, self._call_id_stack)


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
