"""A unit of work and a message bus, as in "Architecture Patterns with Python"; no framework here.

Each service subclasses both (``<service>/unit_of_work.py``, ``<service>/messagebus.py``):

- ``AbstractUnitOfWork``: ``with uow: ... uow.commit()``. Leaving the block
  without ``commit()`` rolls back. ``commit()`` takes the new events of the
  aggregates the repositories handed out (``_seen()``), stores those
  aggregates (``_save()``), runs each event's ``in_transaction`` handlers (an
  outbox record: in the same transaction as the change, or not at all),
  commits (``_commit()``) and keeps the events for ``collect_new_events()``.
  ``flush()`` does all of that but the commit, for a long transaction that
  stores its work a chunk at a time.
- ``DatabaseUnitOfWork``: the same over a worker's database session.
- ``MessageBus``: ``handle(command)`` runs the command's use case, then each
  event its transactions committed through the ``after_commit`` handlers (work
  that must never run under a lock: a gateway call, a wake-up), and returns
  the use case's result.

Aggregates hold their new events in a list attribute ``events``.
"""
import abc
import inspect
from contextlib import contextmanager
from functools import cache


class AbstractUnitOfWork(abc.ABC):
    """One transaction at a time, the repositories inside it, the events it raised.

    ``in_transaction``: event type → handlers ``(event, uow)``. Every event an
    aggregate raises needs an entry (an empty list when nothing is due in the
    transaction), so a forgotten event fails loudly instead of losing its
    outbox record.
    """

    in_transaction = {}
    outbox = None  # where the in-transaction handlers record events (a service without events has none)

    def __init__(self):
        self._flushed_events = []
        self._committed_events = []

    def __enter__(self):
        self._flushed_events = []
        return self

    def __exit__(self, *exc_info):
        self._flushed_events = []
        self.rollback()

    @contextmanager
    def autocommitting(self):
        """``with uow.autocommitting():`` for a block of one statement: what it did is committed when the
        block ends, as with ``with uow: ...; uow.commit()``, but over a database the statement commits by
        itself, without the ``BEGIN`` and ``COMMIT`` round trips. Statements that must take effect together,
        or read one snapshot, belong in ``with uow:``."""
        with self:
            self._autocommit()
            yield self
            self.commit()

    def _autocommit(self):
        """Make each statement of the block just opened commit by itself (nothing to do without a database)."""

    def flush(self):
        """Store the aggregates handed out so far and record their new events, in this transaction."""
        aggregates = list(self._seen())
        raised = []
        for aggregate in aggregates:
            raised.extend(aggregate.events)
            aggregate.events.clear()
        self._save(aggregates)
        for event in raised:
            self.handle_in_transaction(event)
        if self.outbox is not None:
            self.outbox.flush()  # the events recorded so far, in one statement
        self._flushed_events.extend(raised)

    def commit(self):
        self.flush()
        self._commit()
        self._committed_events.extend(self._flushed_events)
        self._flushed_events = []

    def handle_in_transaction(self, event):
        for handler in self.in_transaction[type(event)]:
            handler(event, self)

    def collect_new_events(self):
        """Events of the transactions committed since the last call, in the order raised."""
        events, self._committed_events = self._committed_events, []
        return events

    def _seen(self):
        """The aggregates the repositories handed out in this transaction (whose events ``commit()`` takes)."""
        return ()

    def _save(self, aggregates):
        """Store what changed in ``aggregates`` (and anything else the repositories hold), before the commit."""

    @abc.abstractmethod
    def _commit(self):
        ...

    @abc.abstractmethod
    def rollback(self):
        ...


class DatabaseUnitOfWork(AbstractUnitOfWork):
    """A unit of work over a worker's database handle (``portal_shared.db.UnitOfWork``).

    The handle gives the ``session`` and a ``commit()`` that also wakes the
    outbox relay. ``_open(session)`` builds the repositories for each block
    (``outbox``: a ``portal_shared.repositories.SqlOutbox``, whose rows go in
    one statement at each ``flush()``); ``call_id_stack`` is there for the
    outbox's records.
    """

    def __init__(self, database, call_id_stack=None):
        super().__init__()
        self._database = database
        self._call_id_stack = call_id_stack

    def __enter__(self):
        self._open(self._database.session)
        return super().__enter__()

    @abc.abstractmethod
    def _open(self, session):
        ...

    def _commit(self):
        self._database.commit()

    def _autocommit(self):
        self._database.autocommit()

    def rollback(self):
        self._database.session.rollback()


class MessageBus:
    """Commands to their use case, committed events to their after-commit handlers.

    ``command_handlers``: command type → use case ``(command, uow, **dependencies)``;
    a use case receives, by keyword, the dependencies given to the bus that it names
    as parameters. ``after_commit``: event type → handlers ``(event, bus)``.
    """

    command_handlers = {}
    after_commit = {}

    def __init__(self, uow, **dependencies):
        self.uow = uow
        self.dependencies = dependencies

    def handle(self, command):
        handler = self.command_handlers[type(command)]
        wanted = _parameters(handler)
        result = handler(command, self.uow, **{name: value for name, value in self.dependencies.items()
                                               if name in wanted})
        for event in self.uow.collect_new_events():
            for after in self.after_commit.get(type(event), ()):
                after(event, self)
        return result


@cache
def _parameters(handler):
    return frozenset(inspect.signature(handler).parameters)
