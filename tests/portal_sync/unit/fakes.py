"""Hand-written fakes for the portal_sync use cases: a unit of work over dicts, the dossier service, the portal.

Repositories hand out copies, so a change counts only once it is committed;
``Store.busy`` names records another delivery holds locked (``SKIP LOCKED``
passes them by).
"""
import copy
import random
from contextlib import contextmanager
from dataclasses import dataclass, field

from portal_shared.testing.memory import FakeInbox, InMemoryUnitOfWork
from portal_sync.client import PortalRefused, PortalUnavailable
from portal_sync.domain.sync import SyncRecord
from portal_sync.dossiers import DossierUnavailable
from portal_sync.unit_of_work import AbstractUnitOfWork


@dataclass
class Store:
    records: dict = field(default_factory=dict)  # dossier_code → SyncRecord
    fees: dict = field(default_factory=dict)  # txn_ref → (dossier_code, PaidFee, refunded)
    jobs: dict = field(default_factory=dict)  # name → BackfillJob
    inbox: set = field(default_factory=set)  # (consumer, event_id)
    busy: set = field(default_factory=set)  # dossier codes locked by another transaction


class FakeRecords:
    def __init__(self, store):
        self._store = store
        self._handed_out = []

    def _hand_out(self, record):
        record = copy.deepcopy(record)
        self._handed_out.append(record)
        return record

    def mark_changed(self, dossier_code, now, refetch=True):
        record = self._store.records.get(dossier_code)
        if record is None:
            self._store.records[dossier_code] = SyncRecord.first_seen(dossier_code, now)
        else:
            record.mark_changed(now, refetch)

    def mark_all_changed(self, changes, refetch=True):
        for dossier_code, now in changes:
            self.mark_changed(dossier_code, now, refetch)

    def add_new(self, new_records):
        added = 0
        for record in new_records:
            if record.dossier_code not in self._store.records:
                self._store.records[record.dossier_code] = copy.deepcopy(record)
                added += 1
        return added

    def claim_due(self, now, limit):
        due = sorted((record for record in self._store.records.values()
                      if record.is_due(now) and record.dossier_code not in self._store.busy),
                     key=lambda record: (record.pending_since, record.dossier_code))
        return [self._hand_out(record) for record in due[:limit]]

    def for_update(self, dossier_codes=None):
        return [self._hand_out(record) for code, record in sorted(self._store.records.items())
                if (record.parked_at is not None if dossier_codes is None else code in dossier_codes)]

    def parked(self, limit):
        parked = [record for record in self._store.records.values() if record.parked_at is not None]
        return copy.deepcopy(sorted(parked, key=lambda record: record.parked_at)[:limit])

    def counts(self):
        active = [record for record in self._store.records.values() if record.parked_at is None]
        pending_since = [record.pending_since for record in active if record.pending]
        return (sum(not record.pending for record in active), len(pending_since),
                len(self._store.records) - len(active), min(pending_since, default=None))

    def synchronised(self, sample=None, after=None, limit=500):
        found = [(code, record.sent_status) for code, record in sorted(self._store.records.items())
                 if record.known_at_portal and not record.pending and record.parked_at is None]
        if sample:
            return random.sample(found, min(sample, len(found)))
        return [item for item in found if after is None or item[0] > after][:limit]

    def save(self):
        for record in self._handed_out:
            self._store.records[record.dossier_code] = copy.deepcopy(record)


class FakeFees:
    def __init__(self, store):
        self._store = store

    def record(self, dossier_code, fee, refunded=False):
        known = self._store.fees.get(fee.txn_ref)
        self._store.fees[fee.txn_ref] = (dossier_code, fee, refunded or (known is not None and known[2]))

    def paid(self, dossier_codes):
        paid = {}
        for txn_ref, (dossier_code, fee, refunded) in sorted(self._store.fees.items()):
            if dossier_code in dossier_codes and not refunded:
                paid.setdefault(dossier_code, []).append(fee)
        return paid


class FakeJobs:
    def __init__(self, store):
        self._store = store
        self._handed_out = []

    def get(self, name, for_update=False):
        job = copy.deepcopy(self._store.jobs.get(name))
        if job is not None and for_update:
            self._handed_out.append(job)
        return job

    def add(self, job):
        self._handed_out.append(job)
        return job

    def save(self):
        for job in self._handed_out:
            self._store.jobs[job.name] = copy.deepcopy(job)


class FakeUnitOfWork(InMemoryUnitOfWork, AbstractUnitOfWork):
    def __init__(self):
        super().__init__(Store())

    def _open(self, store):
        self.records = FakeRecords(store)
        self.fees = FakeFees(store)
        self.jobs = FakeJobs(store)
        self.inbox = FakeInbox(store)

    def record(self, dossier_code):
        return self.store.records.get(dossier_code)


class FakeDirectory:
    """The dossier service as portal_sync reads it: ``dossiers`` (code → the contract's Dossier), or away.

    ``reads`` holds the codes of each ``get_many`` call, one list per call."""

    def __init__(self):
        self.dossiers = {}
        self.available = True
        self.reads = []

    @contextmanager
    def open(self):
        if not self.available:
            raise DossierUnavailable("broker: ConnectionRefusedError")
        yield self

    def get_many(self, codes):
        self.reads.append(list(codes))
        return {code: copy.deepcopy(self.dossiers[code]) for code in codes if code in self.dossiers}


class FakePortal:
    """The portal's adapter as ``NationalPortalClient`` presents it: every call kept, refusals and outages scripted.

    ``refused``: dossier codes whose record or progress it refuses; ``away``: every call fails as unavailable;
    ``away_after``: that many more calls succeed, then it is away; ``known``: what ``TraCuuHoSo`` finds.
    """

    def __init__(self):
        self.calls = []
        self.refused = set()
        self.away = False
        self.away_after = None
        self.known = {}

    def _call(self, name, codes, payload):
        if self.away_after is not None:
            self.away, self.away_after = self.away_after <= 0, self.away_after - 1
        if self.away:
            raise PortalUnavailable("HTTP 503")
        refused = self.refused & set(codes)
        if refused:
            raise PortalRefused(f"{name} refused", {"error_code": "-1", "message": f"{sorted(refused)} invalid"})
        self.calls.append((name, payload))

    def sync_dossiers(self, records, updating):
        self._call("DongBoHoSoMC", [record["MaHoSo"] for record in records], (records, updating))

    def update_progress(self, entries):
        self._call("CapNhatTienDoHoSoMC", [entry["MaHoSo"] for entry in entries], entries)

    def look_up(self, dossier_code):
        return self.known.get(dossier_code)

    def sent(self, name):
        return [payload for called, payload in self.calls if called == name]
