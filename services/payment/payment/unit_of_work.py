"""The payment unit of work: one transaction, the repositories inside it, the events it raised.

``with uow: ... uow.commit()`` — leaving the block without ``commit()`` rolls
back. ``commit()`` stores the aggregates the repositories handed out, passes
their new events through the bus's in-transaction handlers (the outbox record,
in the same transaction), commits, and keeps the events for the bus to
dispatch afterwards (``collect_new_events``): the mechanics are
``portal_shared.unit_of_work``'s.
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
        self.charges = SqlCharges(session)
        self.payments = SqlPayments(session, self.charges)
        self.outbox = SqlOutbox(session, self._call_id_stack)
        self.inbox = SqlInbox(session)
