"""SQLAlchemy Core repositories of portal_sync: records, fees and the backfill job in and out.

Only the unit of work (``unit_of_work.SqlUnitOfWork``) uses them; the use
cases see them as ``uow.records``, ``uow.fees`` and ``uow.jobs``. An event is
one statement here (``SqlRecords.mark_changed``, ``SqlFees.record``: upserts, no read).
"""
import functools

import sqlalchemy as sa

from portal_sync.domain.records import PaidFee
from portal_sync.domain.sync import BackfillJob, SyncRecord
from portal_sync.orm import SyncDossier, SyncFee, SyncJob
from portal_shared.sqltypes import dialect_insert, insert_for, on_postgresql

records = SyncDossier.__table__
fees = SyncFee.__table__
jobs = SyncJob.__table__

RECORD_FIELDS = ("snapshot", "snapshot_stale", "known_at_portal", "steps_sent", "sent_status", "pending",
                 "pending_since", "next_attempt_at", "attempts", "last_error", "parked_at", "parked_answer",
                 "synced_at")
JOB_FIELDS = ("cursor", "total", "finished_at", "updated_at")


def record_from_row(values):
    return SyncRecord(values["dossier_code"], **{name: values[name] for name in RECORD_FIELDS})


@functools.cache
def _mark_changed_statement(postgresql, refetch):
    """The upsert of ``mark_changed``, built once per database kind (its values are parameters): built per
    call, its ``excluded`` columns and cache key were a few per cent of the service's CPU."""
    columns = ("dossier_code",) + RECORD_FIELDS
    insert = insert_for(postgresql, records).values(
        {name: sa.bindparam(name) for name in columns})
    changes = {
        "pending": sa.true(),
        "pending_since": sa.case((records.c.pending, records.c.pending_since), else_=insert.excluded.pending_since),
    }
    if refetch:
        changes["snapshot_stale"] = sa.true()
    # RETURNING: several rows go as one multi-row INSERT (SQLAlchemy's insertmanyvalues), not one each
    return insert.on_conflict_do_update(index_elements=[records.c.dossier_code], set_=changes).returning(
        records.c.dossier_code)


def record_values(record):
    return {name: getattr(record, name) for name in RECORD_FIELDS}


class _Tracking:
    """Aggregates handed out in this transaction, and their values as stored, to write only what changed."""

    key = None
    fields = ()

    def __init__(self, session):
        self._session = session
        self._stored = {}

    def _track(self, aggregate):
        self._stored[getattr(aggregate, self.key)] = (aggregate, self._values(aggregate))
        return aggregate

    def _values(self, aggregate):
        return {name: getattr(aggregate, name) for name in self.fields}

    def _changed(self):
        changed = []
        for key, (aggregate, stored) in self._stored.items():
            values = self._values(aggregate)
            if values != stored:
                changed.append({"b_key": key, **{f"b_{name}": value for name, value in values.items()}})
                self._stored[key] = (aggregate, values)
        return changed

    def _update(self, table):
        changed = self._changed()
        if changed:
            self._session.execute(
                table.update().where(table.c[self.key] == sa.bindparam("b_key"))
                .values(**{name: sa.bindparam(f"b_{name}") for name in self.fields}),
                changed,
            )


class SqlRecords(_Tracking):
    key = "dossier_code"
    fields = RECORD_FIELDS

    def mark_changed(self, dossier_code, now, refetch=True):
        """``SyncRecord.mark_changed`` (or ``first_seen`` for a new dossier), as one upsert."""
        self.mark_all_changed([(dossier_code, now)], refetch)

    def mark_all_changed(self, changes, refetch=True):
        """``mark_changed`` for each ``(dossier_code, now)``, in one upsert: a dossier named twice counts
        from its earliest change. Rows go in by dossier code, so concurrent upserts of overlapping dossiers
        wait for each other instead of deadlocking."""
        earliest = {}
        for dossier_code, now in changes:
            earliest[dossier_code] = min(now, earliest.get(dossier_code, now))
        if not earliest:
            return
        self._session.execute(
            _mark_changed_statement(on_postgresql(self._session), refetch),
            [{"dossier_code": dossier_code, **record_values(SyncRecord.first_seen(dossier_code, now))}
             for dossier_code, now in sorted(earliest.items())])

    def add_new(self, new_records):
        """Store the records whose dossier is not tracked yet (the others are left alone); how many were new."""
        if not new_records:
            return 0
        insert = dialect_insert(self._session, records).values(
            [{"dossier_code": record.dossier_code, **record_values(record)} for record in new_records])
        return self._session.execute(insert.on_conflict_do_nothing(index_elements=["dossier_code"])).rowcount or 0

    def claim_due(self, now, limit):
        """Up to ``limit`` due records, oldest change first, locked; those another delivery holds are skipped."""
        rows = self._session.execute(
            sa.select(records)
            .where(records.c.pending.is_(True), records.c.parked_at.is_(None),
                   sa.or_(records.c.next_attempt_at.is_(None), records.c.next_attempt_at <= now))
            .order_by(records.c.pending_since, records.c.dossier_code)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).mappings().all()
        return [self._track(record_from_row(row)) for row in rows]

    def for_update(self, dossier_codes=None):
        """These records (every parked one when ``dossier_codes`` is None), locked."""
        statement = sa.select(records).with_for_update()
        if dossier_codes is None:
            statement = statement.where(records.c.parked_at.is_not(None))
        else:
            statement = statement.where(records.c.dossier_code.in_(list(dossier_codes)))
        return [self._track(record_from_row(row)) for row in self._session.execute(statement).mappings()]

    def parked(self, limit):
        rows = self._session.execute(
            sa.select(records).where(records.c.parked_at.is_not(None)).order_by(records.c.parked_at).limit(limit)
        ).mappings().all()
        return [record_from_row(row) for row in rows]

    def counts(self):
        """``(synced, pending, parked, oldest pending_since)``, in one statement."""
        active = records.c.parked_at.is_(None)
        return tuple(self._session.execute(
            sa.select(
                sa.func.count().filter(records.c.pending.is_(False), active),
                sa.func.count().filter(records.c.pending.is_(True), active),
                sa.func.count().filter(records.c.parked_at.is_not(None)),
                sa.func.min(records.c.pending_since).filter(records.c.pending.is_(True), active),
            )
        ).one())

    def synchronised(self, sample=None, after=None, limit=500):
        """``(dossier_code, sent_status)`` of records the portal should have as sent: a random ``sample``,
        or by code after ``after``."""
        statement = sa.select(records.c.dossier_code, records.c.sent_status).where(
            records.c.known_at_portal.is_(True), records.c.pending.is_(False), records.c.parked_at.is_(None))
        if sample:
            return [tuple(row) for row in self._session.execute(
                statement.order_by(sa.func.random()).limit(sample))]
        if after is not None:
            statement = statement.where(records.c.dossier_code > after)
        return [tuple(row) for row in self._session.execute(statement.order_by(records.c.dossier_code).limit(limit))]

    def save(self):
        self._update(records)


class SqlFees:
    def __init__(self, session):
        self._session = session

    def record(self, dossier_code, fee, refunded=False):
        """A fee paid (``refunded``: refunded since), as one upsert on its ``txn_ref``."""
        insert = dialect_insert(self._session, fees).values(
            txn_ref=fee.txn_ref, dossier_code=dossier_code, amount=int(fee.amount), gateway=fee.gateway or "",
            paid_at=fee.paid_at, refunded=refunded)
        update = {"refunded": sa.true()} if refunded else {"txn_ref": insert.excluded.txn_ref}
        self._session.execute(insert.on_conflict_do_update(index_elements=[fees.c.txn_ref], set_=update))

    def paid(self, dossier_codes):
        """``{dossier_code: [PaidFee]}``: the fees paid and not refunded, by ``txn_ref``."""
        paid = {}
        rows = self._session.execute(
            sa.select(fees).where(fees.c.dossier_code.in_(list(dossier_codes)), fees.c.refunded.is_(False))
            .order_by(fees.c.txn_ref)
        ).mappings()
        for row in rows:
            paid.setdefault(row["dossier_code"], []).append(
                PaidFee(row["txn_ref"], row["amount"], row["gateway"], row["paid_at"]))
        return paid


class SqlJobs(_Tracking):
    key = "name"
    fields = JOB_FIELDS

    def __init__(self, session):
        super().__init__(session)
        self._new = []

    def get(self, name, for_update=False):
        statement = sa.select(jobs).where(jobs.c.name == name)
        if for_update:
            statement = statement.with_for_update()
        row = self._session.execute(statement).mappings().first()
        if row is None:
            return None
        job = BackfillJob(row["name"], **{name_: row[name_] for name_ in JOB_FIELDS})
        return self._track(job) if for_update else job

    def add(self, job):
        """A new job, inserted with its values as they are when the unit of work commits."""
        self._new.append(job)
        return job

    def save(self):
        for job in self._new:
            self._session.execute(jobs.insert().values(name=job.name, **self._values(job)))
            self._track(job)
        self._new = []
        self._update(jobs)
