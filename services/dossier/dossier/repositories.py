"""SQLAlchemy Core repository of the dossier service: aggregates in, aggregates out.

Only the unit of work (``unit_of_work.SqlUnitOfWork``) uses it; the use cases
see it as ``uow.dossiers``. Each statement is written for the hot paths: a
submission is one insert per table, an action on a dossier is its locked row,
its history, one update and one insert of the new history entries.
"""
import sqlalchemy as sa

from dossier.domain.model import OPEN, PAUSED, Applicant, Dossier, HistoryEntry, Procedure, Status
from dossier.orm import DossierRow, HistoryRow
from portal_shared.sqltypes import dialect_insert

dossiers = DossierRow.__table__
history = HistoryRow.__table__

MUTABLE_FIELDS = ("status", "fee_paid", "due_at", "paused_since", "processed_at")  # all else is set at submission


def dossier_from_row(values, entries=()):
    return Dossier(
        code=values["code"],
        procedure=Procedure(values["procedure_code"], values["procedure_name"], values["agency_code"],
                            values["fee_amount"], values["processing_days"]),
        applicant=Applicant(values["applicant_full_name"], values["applicant_id_number"], values["applicant_phone"],
                            values["applicant_email"], values["applicant_address"]),
        form_data=values["form_data"] or {},
        status=Status(values["status"]),
        submitted_at=values["submitted_at"],
        due_at=values["due_at"],
        paused_since=values["paused_since"],
        processed_at=values["processed_at"],
        fee_paid=values["fee_paid"],
        history=list(entries),
    )


def entry_from_row(values):
    return HistoryEntry(Status(values["status"]), values["at"], values["actor"], values["note"])


def mutable_values(dossier):
    return {"status": dossier.status.value, "fee_paid": dossier.fee_paid, "due_at": dossier.due_at,
            "paused_since": dossier.paused_since, "processed_at": dossier.processed_at}


def submission_values(dossier):
    procedure, applicant = dossier.procedure, dossier.applicant
    return {
        "code": dossier.code, "procedure_code": procedure.code, "procedure_name": procedure.name,
        "agency_code": procedure.agency_code, "fee_amount": procedure.fee, "processing_days": procedure.processing_days,
        "applicant_full_name": applicant.full_name, "applicant_id_number": applicant.id_number,
        "applicant_phone": applicant.phone, "applicant_email": applicant.email,
        "applicant_address": applicant.address, "form_data": dossier.form_data,
        "submitted_at": dossier.submitted_at, **mutable_values(dossier),
    }


class _Tracked:
    """A dossier handed out in this transaction: its row id, and what is stored of it already."""

    __slots__ = ("dossier", "row_id", "stored", "entries_stored")

    def __init__(self, dossier, row_id, entries_stored):
        self.dossier, self.row_id, self.entries_stored = dossier, row_id, entries_stored
        self.stored = mutable_values(dossier)


class SqlDossiers:
    def __init__(self, session):
        self._session = session  # Core statements through the worker's session (its transaction)
        self._tracked = []

    @property
    def seen(self):
        return [tracked.dossier for tracked in self._tracked]

    def add(self, dossier):
        """Store a new dossier; False (nothing stored) when its code is taken already."""
        row_id = self._session.execute(
            dialect_insert(self._session, dossiers).values(**submission_values(dossier))
            .on_conflict_do_nothing(index_elements=[dossiers.c.code]).returning(dossiers.c.id)
        ).scalar()
        if row_id is None:
            return False
        self._tracked.append(_Tracked(dossier, row_id, entries_stored=0))
        return True

    def get(self, code):
        """The dossier with its history, without a lock (a read), or None: one statement."""
        return self.get_many([code]).get(code)

    def get_many(self, codes):
        """``{code: dossier}`` of those of ``codes`` that exist, with their histories, without a lock: one
        statement for all (the dossiers joined to their history entries), so each dossier and its history
        come from one snapshot, as no second statement could promise under READ COMMITTED."""
        rows = self._session.execute(
            sa.select(dossiers, history.c.status.label("entry_status"), history.c.at, history.c.actor,
                      history.c.note)
            .select_from(dossiers.outerjoin(history, history.c.dossier_id == dossiers.c.id))
            .where(dossiers.c.code.in_(sorted(set(codes)))).order_by(dossiers.c.id, history.c.id)
        ).mappings().all()
        first_rows, entries = {}, {}
        for row in rows:
            code = row["code"]
            if code not in first_rows:
                first_rows[code], entries[code] = row, []
            if row["entry_status"] is not None:
                entries[code].append(HistoryEntry(Status(row["entry_status"]), row["at"], row["actor"], row["note"]))
        return {code: dossier_from_row(row, entries[code]) for code, row in first_rows.items()}

    def get_for_update(self, code, with_history=True):
        """The dossier with its row locked until the transaction ends, or None.

        ``with_history=False`` spares the history's read for a caller that never
        shows it: the dossier's ``history`` then holds only what this transaction adds.
        """
        return self.all_for_update([code], with_history).get(code)

    def all_for_update(self, codes, with_history=True):
        """``{code: dossier}`` of those of ``codes`` that exist, their rows locked until the transaction ends:
        two statements for all. The rows are locked in code order, so two transactions locking overlapping
        sets wait for each other instead of deadlocking; the history is read after the locks, so it holds
        every entry committed before them."""
        rows = self._session.execute(
            sa.select(dossiers).where(dossiers.c.code.in_(sorted(set(codes))))
            .order_by(dossiers.c.code).with_for_update()).mappings().all()
        entries = {row["id"]: [] for row in rows}
        if with_history and entries:
            for values in self._session.execute(
                    sa.select(history).where(history.c.dossier_id.in_(list(entries)))
                    .order_by(history.c.dossier_id, history.c.id)).mappings():
                entries[values["dossier_id"]].append(entry_from_row(values))
        found = {}
        for row in rows:
            dossier = dossier_from_row(row, entries[row["id"]])
            self._tracked.append(_Tracked(dossier, row["id"], entries_stored=len(entries[row["id"]])))
            found[dossier.code] = dossier
        return found

    def list(self, applicant_id_number=None, status=None, agency_code=None, limit=50, offset=0, agency_codes=None):
        """``(dossiers with their history, total)``, newest first."""
        conditions = []
        if agency_codes is not None:
            conditions.append(dossiers.c.agency_code.in_(agency_codes))
        if applicant_id_number:
            conditions.append(dossiers.c.applicant_id_number == applicant_id_number)
        if status:
            conditions.append(dossiers.c.status == status)
        if agency_code:
            conditions.append(dossiers.c.agency_code == agency_code)
        total = self._session.execute(sa.select(sa.func.count()).select_from(dossiers).where(*conditions)).scalar_one()
        rows = self._session.execute(
            sa.select(dossiers).where(*conditions).order_by(dossiers.c.submitted_at.desc(), dossiers.c.id.desc())
            .limit(limit).offset(offset)
        ).mappings().all()
        entries = {row["id"]: [] for row in rows}
        if entries:
            for values in self._session.execute(
                    sa.select(history).where(history.c.dossier_id.in_(list(entries))).order_by(history.c.id)
            ).mappings():
                entries[values["dossier_id"]].append(entry_from_row(values))
        return [dossier_from_row(row, entries[row["id"]]) for row in rows], total

    def statistics(self, now, agency_code=None, since=None, until=None):
        """``(by_status, on_time, late, overdue_open)`` behind ``dossier_stats``, computed in SQL."""
        conditions = []
        if agency_code:
            conditions.append(dossiers.c.agency_code == agency_code)
        if since:
            conditions.append(dossiers.c.submitted_at >= since)
        if until:
            conditions.append(dossiers.c.submitted_at < until)
        by_status = dict(self._session.execute(
            sa.select(dossiers.c.status, sa.func.count()).where(*conditions).group_by(dossiers.c.status)).all())
        running = [status.value for status in OPEN - PAUSED]
        paused = [status.value for status in PAUSED]
        processed_at, due_at = dossiers.c.processed_at, dossiers.c.due_at
        on_time, late, overdue_open = self._session.execute(
            sa.select(
                sa.func.count().filter(processed_at.is_not(None), processed_at <= due_at),
                sa.func.count().filter(processed_at.is_not(None), processed_at > due_at),
                sa.func.count().filter(sa.or_(
                    sa.and_(dossiers.c.status.in_(running), due_at < now),
                    # a paused dossier's clock is stopped: overdue only if it already was when it paused
                    sa.and_(dossiers.c.status.in_(paused), due_at < dossiers.c.paused_since),
                )),
            ).where(*conditions)
        ).one()
        return by_status, on_time, late, overdue_open

    def save(self):
        """Write what changed of the dossiers handed out: one update, one insert of new history entries."""
        changed = []
        entries = []
        for tracked in self._tracked:
            dossier = tracked.dossier
            values = mutable_values(dossier)
            if values != tracked.stored:
                changed.append({"b_id": tracked.row_id, **{f"b_{name}": values[name] for name in MUTABLE_FIELDS}})
                tracked.stored = values
            entries.extend({"dossier_id": tracked.row_id, "status": entry.status.value, "at": entry.at,
                            "actor": entry.actor, "note": entry.note}
                           for entry in dossier.history[tracked.entries_stored:])
            tracked.entries_stored = len(dossier.history)
        if changed:
            self._session.execute(
                dossiers.update().where(dossiers.c.id == sa.bindparam("b_id"))
                .values(**{name: sa.bindparam(f"b_{name}") for name in MUTABLE_FIELDS}),
                changed,
            )
        if entries:
            self._session.execute(history.insert(), entries)
