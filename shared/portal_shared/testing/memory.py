"""Hand-written fakes for the unit tier: a unit of work over an in-memory store, its outbox and inbox.

``InMemoryUnitOfWork`` behaves as the SQL one does where a use case can tell:
each ``with uow:`` block works on a copy of the committed store, ``commit()``
makes a copy of the work the committed store, leaving the block without
committing throws the work away. A service's fake combines it with its own
``AbstractUnitOfWork`` and builds its fake repositories in ``_open(store)``.
The store needs ``outbox`` (a list) and ``inbox`` (a set) for the fakes below.
"""
import copy

from portal_shared import unit_of_work


class InMemoryUnitOfWork(unit_of_work.AbstractUnitOfWork):
    def __init__(self, store):
        super().__init__()
        self.store = store
        self.commits = 0
        self._work = None

    def __enter__(self):
        self._work = copy.deepcopy(self.store)
        self._open(self._work)
        return super().__enter__()

    def _open(self, store):
        raise NotImplementedError

    def _commit(self):
        self.store = copy.deepcopy(self._work)
        self.commits += 1

    def rollback(self):
        self._work = None


class FakeOutbox:
    """Keeps ``(event_type, payload, aggregate_key)`` in ``store.outbox``, and the extra headers of an event
    given any in ``headers`` (by ``event_id``)."""

    def __init__(self, store):
        self._store = store
        self.headers = {}

    def add(self, event_type, payload, aggregate_key, headers=None):
        self._store.outbox.append((event_type, payload, aggregate_key))
        if headers:
            self.headers[payload["event_id"]] = headers

    def flush(self):
        """Nothing to write: ``add`` stored the event already."""


class FakeInbox:
    """Keeps ``(consumer, event_id)`` claims in ``store.inbox``."""

    def __init__(self, store):
        self._store = store

    def claim(self, consumer, event_id):
        if (consumer, event_id) in self._store.inbox:
            return False
        self._store.inbox.add((consumer, event_id))
        return True

    def claim_all(self, claims):
        return [self.claim(consumer, str(event_id)) for consumer, event_id in claims]
