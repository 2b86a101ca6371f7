"""Group commit: the small transactions of concurrent workers, run as one.

Each event handler worker of a busy service runs a transaction of a few
statements (an inbox claim, an upsert or two, the outbox rows) and pays a
round trip to PostgreSQL for each, plus ``BEGIN`` and ``COMMIT``. When events
arrive faster than they are handled, several workers wait at once; a
``GroupCommit`` runs what they all wait for in one transaction instead:

- a worker calls ``group.run(item, uow)`` and blocks until its item is done;
  its result comes back, or its own exception is raised;
- when no batch is running, that worker leads one at once: it takes every
  item waiting (its own first, at most ``most``) and runs
  ``together(items, uow)`` with its own unit of work, which returns one
  result per item;
- items that arrive meanwhile wait for that batch to end; then the first of
  them leads the next batch with its unit of work. A lone item therefore
  waits for nothing: batches only form where there was a queue already;
- ``together`` may answer an exception for an item it refused without
  touching anything (a domain error): that worker gets it raised, the
  others their results;
- if the batch fails, nothing of it was committed, and each of its items
  runs again on its own with ``alone(item, uow)``: an item that cannot be
  applied fails alone (its handler's retry or dead-letter path takes it) and
  the others still commit.

The caller acknowledges its message only once ``run`` returned, i.e. after
the commit that applied it: a crash loses nothing, and the items' inbox claims
keep a redelivered message from applying twice. Green threads only (no OS
thread may call ``run``): nothing here yields between the checks of the
shared state.
"""
from eventlet.event import Event
from nameko.extensions import DependencyProvider

from portal_shared.logs import get_logger

log = get_logger(__name__)

_LEAD = object()  # what a waiting worker is sent when the next batch is its to run


class _Waiter:
    __slots__ = ("item", "uow", "event", "result", "error", "done")

    def __init__(self, item, uow):
        self.item, self.uow = item, uow
        self.event = Event()
        self.result = self.error = None
        self.done = False

    def finish(self, result=None, error=None):
        self.result, self.error, self.done = result, error, True

    def outcome(self):
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit:
    """``GroupCommit(together, alone, most=50)``: ``together(items, uow)`` → one result per item;
    ``alone(item, uow)`` → the item's result. ``batches`` and ``grouped`` count what ran together."""

    def __init__(self, together, alone, most=50, name="group"):
        if most < 1:
            raise ValueError("most must be at least 1")
        self.together, self.alone, self.most, self.name = together, alone, most, name
        self._waiting = []
        self._leader = None  # the waiter running (or told to run) the current batch
        self.batches = self.grouped = 0

    def run(self, item, uow):
        waiter = _Waiter(item, uow)
        self._waiting.append(waiter)
        if self._leader is None:
            self._leader = waiter
        else:
            try:
                signal = waiter.event.wait()
            except BaseException:  # killed while waiting: never leave the others without a leader
                self._abandon(waiter)
                raise
            if signal is not _LEAD:
                return waiter.outcome()
        self._lead(waiter)
        return waiter.outcome()

    def _abandon(self, waiter):
        if waiter in self._waiting:
            self._waiting.remove(waiter)
        if self._leader is waiter:
            self._hand_over()

    def _lead(self, leader):
        batch, self._waiting = self._waiting[:self.most], self._waiting[self.most:]
        try:
            self._run_batch(batch, leader.uow)
        finally:
            for waiter in batch:
                if not waiter.done:  # the leader was killed mid-batch: the others learn it was not applied
                    waiter.finish(error=RuntimeError(f"{self.name}: the batch was interrupted"))
                if waiter is not leader:
                    waiter.event.send(None)
            self._hand_over()

    def _hand_over(self):
        self._leader = self._waiting[0] if self._waiting else None
        if self._leader is not None:
            self._leader.event.send(_LEAD)

    def _run_batch(self, batch, uow):
        self.batches += 1
        if len(batch) > 1:
            try:
                results = self.together([waiter.item for waiter in batch], uow)
            except Exception as exc:
                log.warning("group_commit_split", group=self.name, items=len(batch), error_type=type(exc).__name__)
            else:
                self.grouped += len(batch)
                for waiter, result in zip(batch, results, strict=True):
                    if isinstance(result, Exception):
                        waiter.finish(error=result)
                    else:
                        waiter.finish(result)
                return
        for waiter in batch:
            try:
                waiter.finish(self.alone(waiter.item, uow))
            except Exception as exc:
                waiter.finish(error=exc)


class GroupCommits(DependencyProvider):
    """The container's ``GroupCommit`` of one kind of item: ``group = GroupCommits(together, alone)``
    on the service, ``self.group.run(item, uow)`` in its workers (at most ``most`` items a batch;
    the worker pool, ``max_workers``, bounds it too)."""

    def __init__(self, together, alone, most=50):
        self.together, self.alone, self.most = together, alone, most

    @classmethod
    def of_commands(cls, bus, many, most=50):
        """Commands for the message bus ``bus(uow)``: one alone as it is, several as the command
        ``many(commands)`` (whose use case gives one result per command)."""
        return cls(lambda commands, uow: bus(uow).handle(many(tuple(commands))),
                   lambda command, uow: bus(uow).handle(command), most)

    def setup(self):
        self.group = GroupCommit(self.together, self.alone, most=self.most,
                                 name=f"{self.container.service_name}.{self.attr_name}")

    def get_dependency(self, worker_ctx):
        return self.group
