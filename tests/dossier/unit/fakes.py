"""Hand-written fakes for the dossier use cases: a unit of work over dicts.

Repositories hand out copies, so a change counts only once it is committed;
``get_for_update(with_history=False)`` hands out a dossier whose history holds
only what the transaction adds, as the SQL repository does.
"""
import copy
from dataclasses import dataclass, field, replace

from dossier.domain.model import OPEN, PAUSED
from dossier.unit_of_work import AbstractUnitOfWork
from portal_shared.testing.memory import FakeInbox, FakeOutbox, InMemoryUnitOfWork


@dataclass
class Store:
    dossiers: dict = field(default_factory=dict)  # code → Dossier, in submission order
    outbox: list = field(default_factory=list)  # (event_type, payload, aggregate_key)
    inbox: set = field(default_factory=set)  # (consumer, event_id)


class FakeDossiers:
    def __init__(self, store):
        self._store = store
        self._tracked = []  # (dossier, history entries stored already)

    @property
    def seen(self):
        return [dossier for dossier, _ in self._tracked]

    def add(self, dossier):
        if dossier.code in self._store.dossiers:
            return False
        self._store.dossiers[dossier.code] = replace(copy.deepcopy(dossier), history=[], events=[])
        self._tracked.append((dossier, 0))
        return True

    def get(self, code):
        dossier = self._store.dossiers.get(code)
        return copy.deepcopy(dossier) if dossier is not None else None

    def get_many(self, codes):
        found = {code: self.get(code) for code in codes}
        return {code: dossier for code, dossier in found.items() if dossier is not None}

    def get_for_update(self, code, with_history=True):
        dossier = self.get(code)
        if dossier is None:
            return None
        if not with_history:
            dossier.history = []
        self._tracked.append((dossier, len(dossier.history)))
        return dossier

    def all_for_update(self, codes):
        found = {code: self.get_for_update(code) for code in sorted(set(codes))}
        return {code: dossier for code, dossier in found.items() if dossier is not None}

    def list(self, applicant_id_number=None, status=None, agency_code=None, limit=50, offset=0, agency_codes=None):
        found = [dossier for dossier in reversed(self._store.dossiers.values())
                 if (agency_codes is None or dossier.procedure.agency_code in agency_codes)
                 and (not applicant_id_number or dossier.applicant.id_number == applicant_id_number)
                 and (not status or dossier.status.value == status)
                 and (not agency_code or dossier.procedure.agency_code == agency_code)]
        found.sort(key=lambda dossier: dossier.submitted_at, reverse=True)
        return [copy.deepcopy(dossier) for dossier in found[offset:offset + limit]], len(found)

    def statistics(self, now, agency_code=None, since=None, until=None):
        by_status, on_time, late, overdue_open = {}, 0, 0, 0
        for dossier in self._store.dossiers.values():
            if ((agency_code and dossier.procedure.agency_code != agency_code)
                    or (since and dossier.submitted_at < since) or (until and dossier.submitted_at >= until)):
                continue
            by_status[dossier.status.value] = by_status.get(dossier.status.value, 0) + 1
            if dossier.processed_at is not None and dossier.due_at is not None:
                on_time += dossier.processed_at <= dossier.due_at
                late += dossier.processed_at > dossier.due_at
            if dossier.due_at is not None:
                running = dossier.status in OPEN - PAUSED and dossier.due_at < now
                paused = (dossier.status in PAUSED and dossier.paused_since is not None
                          and dossier.due_at < dossier.paused_since)
                overdue_open += running or paused
        return by_status, on_time, late, overdue_open

    def save(self):
        tracked = []
        for dossier, stored_entries in self._tracked:
            stored = self._store.dossiers[dossier.code]
            history = stored.history + dossier.history[stored_entries:]
            self._store.dossiers[dossier.code] = replace(copy.deepcopy(dossier), history=history, events=[])
            tracked.append((dossier, len(dossier.history)))
        self._tracked = tracked


class FakeUnitOfWork(InMemoryUnitOfWork, AbstractUnitOfWork):
    def __init__(self):
        super().__init__(Store())

    def _open(self, store):
        self.dossiers = FakeDossiers(store)
        self.outbox = FakeOutbox(store)
        self.inbox = FakeInbox(store)

    # --- for assertions ---
    def dossier(self, code):
        return self.store.dossiers.get(code)

    def events(self, event_type=None):
        return [payload for kind, payload, _ in self.store.outbox if event_type in (None, kind)]

