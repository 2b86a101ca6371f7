"""Use cases of portal_sync: plain functions over a unit of work.

The dossier's own history is the source of truth. An event only says "this
dossier changed" (``pending``, ``snapshot_stale``); delivery then reads the
dossier from the dossier service and sends what the portal does not have yet:
the record (``DongBoHoSoMC``) and the history entries after ``steps_sent``
(``CapNhatTienDoHoSoMC``), oldest first. Out-of-order or redelivered events
therefore cannot reorder or repeat a step, and a backfill or a drift check is
the same path with another trigger.

Each dossier's row is locked (``FOR UPDATE SKIP LOCKED``) from the moment a
delivery claims it until its outcome is committed, so two replicas never send
the same dossier at once and a later status never overtakes an earlier one.
"""
import json
from collections import Counter
from datetime import timedelta

import sqlalchemy as sa

from portal_shared.inbox import claim_event
from portal_shared.logs import get_logger
from portal_shared.timeutil import isoformat, utcnow
from portal_sync.client import PortalRefused, PortalUnavailable
from portal_sync.domain.records import PaidFee, dossier_record, progress_entries, status_code
from portal_sync.dossiers import DossierMissing, DossierUnavailable
from portal_sync.orm import SyncDossier, SyncFee, SyncJob, upsert

log = get_logger(__name__)

ANSWER_LIMIT = 4000  # characters of a portal answer kept for the operator
BACKFILL_JOB = "backfill"
STEPS_PER_CALL = 500  # CapNhatTienDoHoSoMC entries per call; a dossier's entries stay in order across calls


# --- what the events tell us -------------------------------------------------------------------------


def _mark_changed(session, dossier_code, now, refetch=True):
    """The dossier has something new for the portal: pending (again), refetched when ``refetch``."""
    table = SyncDossier.__table__
    insert = upsert(session, table).values(
        dossier_code=dossier_code, snapshot=None, snapshot_stale=True, known_at_portal=False, steps_sent=0,
        pending=True, pending_since=now, attempts=0,
    )
    changes = {
        "pending": sa.true(),
        "pending_since": sa.case((table.c.pending, table.c.pending_since), else_=insert.excluded.pending_since),
    }
    if refetch:
        changes["snapshot_stale"] = sa.true()
    session.execute(insert.on_conflict_do_update(index_elements=[table.c.dossier_code], set_=changes))


def record_status_change(uow, consumer, event, now=None):
    """``dossier_status_changed``: once per event, the dossier becomes pending. False for a duplicate."""
    now = now or utcnow()
    with uow.transaction() as session:
        if not claim_event(session, consumer, event["event_id"]):
            return False
        _mark_changed(session, event["dossier_code"], now)
    return True


def record_payment(uow, consumer, event, refunded=False, now=None):
    """``payment_succeeded`` / ``payment_refunded``: the fee list changes. False for a duplicate."""
    now = now or utcnow()
    with uow.transaction() as session:
        if not claim_event(session, consumer, event["event_id"]):
            return False
        table = SyncFee.__table__
        insert = upsert(session, table).values(
            txn_ref=event["txn_ref"], dossier_code=event["dossier_code"], amount=int(event["amount"]),
            gateway=event.get("gateway") or "", paid_at=event.get("paid_at"), refunded=refunded,
        )
        update = {"refunded": sa.true()} if refunded else {"txn_ref": insert.excluded.txn_ref}
        session.execute(insert.on_conflict_do_update(index_elements=[table.c.txn_ref], set_=update))
        _mark_changed(session, event["dossier_code"], now, refetch=False)
    return True


# --- delivery ----------------------------------------------------------------------------------------


def _bounded_answer(answer):
    text = json.dumps(answer, ensure_ascii=False, default=str)
    return answer if len(text) <= ANSWER_LIMIT else {"truncated": text[:ANSWER_LIMIT]}


def _defer(row, error, now, backoff_seconds, max_backoff_seconds):
    row.attempts = (row.attempts or 0) + 1
    delay = min(max_backoff_seconds, backoff_seconds * 2 ** (row.attempts - 1))
    row.next_attempt_at = now + timedelta(seconds=delay)
    row.last_error = str(error)[:1000]


def _park(row, answer, reason, now):
    row.parked_at = now
    row.parked_answer = _bounded_answer(answer)
    row.last_error = str(reason)[:1000]
    log.warning("portal_sync_parked", dossier_code=row.dossier_code, reason=row.last_error)


def _fees(session, codes):
    fees = {}
    rows = session.execute(
        sa.select(SyncFee).where(SyncFee.dossier_code.in_(codes), SyncFee.refunded.is_(False)).order_by(SyncFee.txn_ref)
    ).scalars()
    for fee in rows:
        fees.setdefault(fee.dossier_code, []).append(PaidFee(fee.txn_ref, fee.amount, fee.gateway, fee.paid_at))
    return fees


class Delivery:
    """One claimed batch: refresh what is stale, send, record every outcome."""

    def __init__(self, session, client, codes, now, backoff_seconds, max_backoff_seconds):
        self.session, self.client, self.codes, self.now = session, client, codes, now
        self.backoff_seconds, self.max_backoff_seconds = backoff_seconds, max_backoff_seconds
        self.outcome = Counter()

    def refresh(self, rows, directory):
        """Rows with a current snapshot; the others are deferred (dossier service away) or parked."""
        stale = [row for row in rows if row.snapshot_stale or row.snapshot is None]
        if not stale:
            return rows
        failed = set()
        try:
            with directory.open() as dossiers:
                for row in stale:
                    try:
                        snapshot = dossiers.get(row.dossier_code)
                    except DossierMissing:
                        _park(row, {"error": "unknown to the dossier service"}, "dossier not found", self.now)
                        self.outcome["parked"] += 1
                        failed.add(row.dossier_code)
                        continue
                    row.snapshot, row.snapshot_stale = snapshot, False
        except DossierUnavailable as exc:
            for row in stale:
                if row.snapshot_stale or row.snapshot is None:
                    _defer(row, exc, self.now, self.backoff_seconds, self.max_backoff_seconds)
                    self.outcome["deferred"] += 1
                    failed.add(row.dossier_code)
        return [row for row in rows if row.dossier_code not in failed]

    def send(self, rows):
        """Send ``rows`` together; on a refusal, one by one to find and park the refused ones."""
        if not rows:
            return
        try:
            self._send_together(rows)
        except PortalRefused as exc:
            if len(rows) == 1:
                _park(rows[0], exc.answer, exc, self.now)
                self.outcome["parked"] += 1
                return
            for row in rows:
                self.send([row])

    def _record(self, row, fees):
        procedure = self.codes.procedure(row.snapshot["procedure_code"], row.snapshot.get("procedure_name"))
        return dossier_record(row.snapshot, procedure, fees.get(row.dossier_code, ()))

    def _send_together(self, rows):
        fees = _fees(self.session, [row.dossier_code for row in rows])
        first_seen = [row for row in rows if not row.known_at_portal]
        known = [row for row in rows if row.known_at_portal]
        if first_seen:
            self.client.sync_dossiers([self._record(row, fees) for row in first_seen], updating=False)
            for row in first_seen:
                row.known_at_portal, row.sent_status = True, row.snapshot["status"]
        if known:
            self.client.sync_dossiers([self._record(row, fees) for row in known], updating=True)
            for row in known:
                row.sent_status = row.snapshot["status"]
        steps = [(row, entry) for row in rows for entry in progress_entries(row.snapshot, row.steps_sent)]
        for start in range(0, len(steps), STEPS_PER_CALL):
            chunk = steps[start:start + STEPS_PER_CALL]
            self.client.update_progress([entry for _, entry in chunk])
            for row, _ in chunk:  # counted per accepted call: a later failure resends only the rest
                row.steps_sent += 1
            self.outcome["calls"] += 1
        for row in rows:
            row.pending, row.pending_since, row.next_attempt_at = False, None, None
            row.attempts, row.last_error, row.synced_at = 0, None, self.now
        self.outcome["delivered"] += len(rows)
        self.outcome["steps"] += len(steps)
        self.outcome["calls"] += bool(first_seen) + bool(known)

    def defer_rest(self, rows, error):
        """The adapter is away: the caller backs off as a whole, so once it is back every row is due at once."""
        for row in rows:
            if row.pending and row.parked_at is None:
                row.attempts = (row.attempts or 0) + 1
                row.last_error = str(error)[:1000]
                self.outcome["deferred"] += 1


def deliver_due(uow, directory, client, codes, batch_size=50, backoff_seconds=2.0, max_backoff_seconds=300.0,
                now=None):
    """Claim up to ``batch_size`` due dossiers and report them; returns a Counter of outcomes.

    ``outcome["unavailable"]`` is 1 when the adapter could not be reached (the
    caller backs off); the rows keep their place and get a later attempt time.
    """
    now = now or utcnow()
    with uow.transaction() as session:
        rows = session.execute(
            sa.select(SyncDossier)
            .where(SyncDossier.pending.is_(True), SyncDossier.parked_at.is_(None),
                   sa.or_(SyncDossier.next_attempt_at.is_(None), SyncDossier.next_attempt_at <= now))
            .order_by(SyncDossier.pending_since, SyncDossier.dossier_code)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        ).scalars().all()
        delivery = Delivery(session, client, codes, now, backoff_seconds, max_backoff_seconds)
        delivery.outcome["claimed"] = len(rows)
        if not rows:
            return delivery.outcome
        ready = delivery.refresh(rows, directory)
        try:
            delivery.send(ready)
        except PortalUnavailable as exc:
            delivery.defer_rest(ready, exc)
            delivery.outcome["unavailable"] = 1
            log.warning("national_portal_unavailable", error=str(exc), deferred=delivery.outcome["deferred"])
    return delivery.outcome


# --- operators ---------------------------------------------------------------------------------------


def list_parked(uow, limit=1000):
    with uow.read() as session:
        rows = session.execute(
            sa.select(SyncDossier).where(SyncDossier.parked_at.is_not(None)).order_by(SyncDossier.parked_at).limit(limit)
        ).scalars().all()
        return [{
            "dossier_code": row.dossier_code,
            "parked_at": isoformat(row.parked_at),
            "status": (row.snapshot or {}).get("status"),
            "reason": row.last_error,
            "answer": row.parked_answer,
        } for row in rows]


def release(uow, codes=None, resend=False, from_scratch=False, now=None):
    """Unpark (``codes`` or every parked dossier when None) and let delivery take them again.

    ``resend`` also re-reads the dossier and sends its record again; ``from_scratch``
    sends it as new with every history entry (for a portal that lost it).
    Returns the dossier codes released.
    """
    now = now or utcnow()
    with uow.transaction() as session:
        statement = sa.select(SyncDossier).with_for_update()
        if codes:
            statement = statement.where(SyncDossier.dossier_code.in_(list(codes)))
        else:
            statement = statement.where(SyncDossier.parked_at.is_not(None))
        rows = session.execute(statement).scalars().all()
        for row in rows:
            if not row.pending:
                row.pending_since = now
            row.pending, row.parked_at, row.parked_answer = True, None, None
            row.attempts, row.next_attempt_at = 0, None
            if resend or from_scratch:
                row.snapshot_stale = True
            if from_scratch:
                row.known_at_portal, row.steps_sent = False, 0
        return [row.dossier_code for row in rows]


def sync_stats(uow, now=None):
    """``{synced, pending, parked, oldest_pending_seconds}``."""
    now = now or utcnow()
    with uow.read() as session:
        synced, pending, parked, oldest = session.execute(
            sa.select(
                sa.func.count().filter(SyncDossier.pending.is_(False), SyncDossier.parked_at.is_(None)),
                sa.func.count().filter(SyncDossier.pending.is_(True), SyncDossier.parked_at.is_(None)),
                sa.func.count().filter(SyncDossier.parked_at.is_not(None)),
                sa.func.min(SyncDossier.pending_since).filter(SyncDossier.pending.is_(True),
                                                              SyncDossier.parked_at.is_(None)),
            )
        ).one()
    if oldest is not None and oldest.tzinfo is None:
        from datetime import timezone

        oldest = oldest.replace(tzinfo=timezone.utc)
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return {"synced": synced, "pending": pending, "parked": parked, "oldest_pending_seconds": round(age, 3)}


# --- catch-up ----------------------------------------------------------------------------------------


def backfill_position(uow):
    with uow.read() as session:
        job = session.get(SyncJob, BACKFILL_JOB)
        return (job.cursor, job.total, job.finished_at) if job else (0, None, None)


def backfill_page(uow, dossiers, next_cursor, total, now=None):
    """Track every dossier of one ``list_dossiers`` page and move the cursor, in one transaction.

    A dossier already tracked is left alone (events keep it current), so a rerun
    or a page read twice changes nothing. Returns how many dossiers were new.
    """
    now = now or utcnow()
    with uow.transaction() as session:
        added = 0
        if dossiers:
            insert = upsert(session, SyncDossier.__table__).values([{
                "dossier_code": dossier["code"], "snapshot": dossier, "snapshot_stale": False,
                "known_at_portal": False, "steps_sent": 0, "pending": True, "pending_since": now, "attempts": 0,
            } for dossier in dossiers]).on_conflict_do_nothing(index_elements=["dossier_code"])
            added = session.execute(insert).rowcount or 0
        job = session.get(SyncJob, BACKFILL_JOB, with_for_update=True)
        if job is None:
            job = SyncJob(name=BACKFILL_JOB, cursor=0, updated_at=now)
            session.add(job)
        job.cursor, job.total, job.updated_at = next_cursor, total, now
        job.finished_at = None
    return added


def finish_backfill(uow, restart=False, now=None):
    """Mark the backfill finished (``restart``: forget the cursor so the next run starts over)."""
    now = now or utcnow()
    with uow.transaction() as session:
        job = session.get(SyncJob, BACKFILL_JOB, with_for_update=True)
        if job is None:
            job = SyncJob(name=BACKFILL_JOB, cursor=0, updated_at=now)
            session.add(job)
        if restart:
            job.cursor, job.total, job.finished_at = 0, None, None
        else:
            job.finished_at = now
        job.updated_at = now


def drift_candidates(uow, sample=None, after=None, chunk=500):
    """Codes of dossiers the portal should have as we last sent them: a random sample, or all by chunks."""
    with uow.read() as session:
        statement = sa.select(SyncDossier.dossier_code, SyncDossier.sent_status).where(
            SyncDossier.known_at_portal.is_(True), SyncDossier.pending.is_(False), SyncDossier.parked_at.is_(None))
        if sample:
            return session.execute(statement.order_by(sa.func.random()).limit(sample)).all()
        if after is not None:
            statement = statement.where(SyncDossier.dossier_code > after)
        return session.execute(statement.order_by(SyncDossier.dossier_code).limit(chunk)).all()


def check_drift(uow, client, candidates, now=None):
    """``TraCuuHoSo`` each candidate; resend those the portal lost or shows in another status.

    Returns ``{"checked", "lost": [codes], "differ": [{dossier_code, ours, portal}]}``.
    """
    now = now or utcnow()
    lost, differ = [], []
    for code, sent_status in candidates:
        found = client.look_up(code)
        if not found:
            lost.append(code)
            continue
        ours = str(status_code(sent_status)) if sent_status else ""
        theirs = str(found.get("TrangThaiHoSo", "")).strip()
        if theirs != ours:
            differ.append({"dossier_code": code, "ours": ours, "portal": theirs})
    if lost:
        release(uow, lost, from_scratch=True, now=now)
    if differ:
        release(uow, [item["dossier_code"] for item in differ], resend=True, now=now)
    return {"checked": len(candidates), "lost": lost, "differ": differ}
