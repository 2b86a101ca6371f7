"""Use cases of portal_sync: handlers ``(command, uow, ...)`` over ``SyncRecord``s, and reads.

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
No SQLAlchemy here: the repositories of the unit of work hold the queries.
"""
from collections import Counter
from datetime import timezone

from portal_shared.logs import get_logger
from portal_shared.timeutil import isoformat, utcnow
from portal_sync.client import PortalRefused, PortalUnavailable
from portal_sync.commands import RecordStatusChanges, Release
from portal_sync.domain.records import dossier_record, status_code
from portal_sync.domain.sync import BackfillJob, SyncRecord
from portal_sync.dossiers import DossierUnavailable

log = get_logger(__name__)

BACKFILL_JOB = "backfill"
STEPS_PER_CALL = 500  # CapNhatTienDoHoSoMC entries per call; a dossier's entries stay in order across calls


# --- what the events tell us -------------------------------------------------------------------------


def record_status_change(command, uow):
    """``dossier_status_changed``: once per event, the dossier becomes pending. False for a duplicate."""
    return record_status_changes(RecordStatusChanges((command,)), uow)[0]


def record_status_changes(command, uow):
    """``record_status_change`` for several events in one transaction: one inbox claim and one upsert for
    all. Returns each event's answer (False for a repeat, a copy of an event given twice included)."""
    with uow:
        answers = uow.inbox.claim_all([(each.consumer, each.event_id) for each in command.commands])
        changes = [(each.dossier_code, each.now or utcnow())
                   for each, new in zip(command.commands, answers, strict=True) if new]
        if changes:
            uow.records.mark_all_changed(changes)
            uow.commit()
    return answers


def record_fee(command, uow):
    """``payment_succeeded`` / ``payment_refunded``: the fee list changes. False for a duplicate."""
    now = command.now or utcnow()
    with uow:
        if not uow.inbox.claim(command.consumer, command.event_id):
            return False
        uow.fees.record(command.dossier_code, command.fee, refunded=command.refunded)
        uow.records.mark_changed(command.dossier_code, now, refetch=False)
        uow.commit()
    return True


# --- delivery ----------------------------------------------------------------------------------------


class Delivery:
    """One claimed batch: refresh what is stale, send, record every outcome on the records."""

    def __init__(self, uow, client, codes, now, backoff_seconds, max_backoff_seconds):
        self.uow, self.client, self.codes, self.now = uow, client, codes, now
        self.backoff_seconds, self.max_backoff_seconds = backoff_seconds, max_backoff_seconds
        self.outcome = Counter()

    def _park(self, record, answer, reason):
        record.park(answer, reason, self.now)
        self.outcome["parked"] += 1
        log.warning("portal_sync_parked", dossier_code=record.dossier_code, reason=record.last_error)

    def refresh(self, claimed, directory):
        """Records with a current snapshot; the others are deferred (dossier service away) or parked.

        The stale records are read together (``get_many``: one call for a batch), so the dossier service
        answers for all of them or, away, none: then every stale record is deferred."""
        stale = [record for record in claimed if record.needs_snapshot]
        if not stale:
            return claimed
        try:
            with directory.open() as dossiers:
                found = dossiers.get_many([record.dossier_code for record in stale])
        except DossierUnavailable as exc:
            for record in stale:
                record.defer(exc, self.now, self.backoff_seconds, self.max_backoff_seconds)
                self.outcome["deferred"] += 1
            return [record for record in claimed if not record.needs_snapshot]
        failed = set()
        for record in stale:
            if record.dossier_code in found:
                record.refreshed(found[record.dossier_code])
            else:
                self._park(record, {"error": "unknown to the dossier service"}, "dossier not found")
                failed.add(record.dossier_code)
        return [record for record in claimed if record.dossier_code not in failed]

    def send(self, ready):
        """Send ``ready`` together; on a refusal, one by one to find and park the refused ones."""
        if not ready:
            return
        try:
            self._send_together(ready)
        except PortalRefused as exc:
            if len(ready) == 1:
                self._park(ready[0], exc.answer, exc)
                return
            for record in ready:
                self.send([record])

    def _dossier_record(self, record, paid):
        snapshot = record.snapshot
        procedure = self.codes.procedure(snapshot["procedure_code"], snapshot.get("procedure_name"))
        return dossier_record(snapshot, procedure, paid.get(record.dossier_code, ()))

    def _send_together(self, ready):
        paid = self.uow.fees.paid([record.dossier_code for record in ready])
        first_seen = [record for record in ready if not record.known_at_portal]
        known = [record for record in ready if record.known_at_portal]
        if first_seen:
            self.client.sync_dossiers([self._dossier_record(record, paid) for record in first_seen], updating=False)
            for record in first_seen:
                record.record_sent()
        if known:
            self.client.sync_dossiers([self._dossier_record(record, paid) for record in known], updating=True)
            for record in known:
                record.record_sent()
        steps = [(record, entry) for record in ready for entry in record.progress_due()]
        for start in range(0, len(steps), STEPS_PER_CALL):
            chunk = steps[start:start + STEPS_PER_CALL]
            self.client.update_progress([entry for _, entry in chunk])
            for record, _ in chunk:  # counted per accepted call: a later failure resends only the rest
                record.step_sent()
            self.outcome["calls"] += 1
        for record in ready:
            record.delivered(self.now)
        self.outcome["delivered"] += len(ready)
        self.outcome["steps"] += len(steps)
        self.outcome["calls"] += bool(first_seen) + bool(known)

    def adapter_away(self, ready, error):
        """The adapter is away: the caller backs off as a whole, so once it is back every record is due at once."""
        for record in ready:
            if record.adapter_away(error):
                self.outcome["deferred"] += 1


def deliver_due(command, uow, directory, client, codes):
    """Claim up to ``batch_size`` due dossiers and report them; returns a Counter of outcomes.

    ``outcome["unavailable"]`` is 1 when the adapter could not be reached (the
    caller backs off); the records keep their place and get a later attempt time.
    """
    now = command.now or utcnow()
    with uow:
        claimed = uow.records.claim_due(now, command.batch_size)
        delivery = Delivery(uow, client, codes, now, command.backoff_seconds, command.max_backoff_seconds)
        delivery.outcome["claimed"] = len(claimed)
        if not claimed:
            return delivery.outcome
        ready = delivery.refresh(claimed, directory)
        try:
            delivery.send(ready)
        except PortalUnavailable as exc:
            delivery.adapter_away(ready, exc)
            delivery.outcome["unavailable"] = 1
            log.warning("national_portal_unavailable", error=str(exc), deferred=delivery.outcome["deferred"])
        uow.commit()
    return delivery.outcome


# --- operators ---------------------------------------------------------------------------------------


def release(command, uow):
    """Unpark and let delivery take the dossiers again; returns the dossier codes released.

    ``resend`` also re-reads the dossier and sends its record again; ``from_scratch``
    sends it as new with every history entry (for a portal that lost it).
    """
    now = command.now or utcnow()
    codes = None if command.dossier_codes is None else list(command.dossier_codes)
    with uow:
        released = uow.records.for_update(codes)
        for record in released:
            record.release(now, resend=command.resend, from_scratch=command.from_scratch)
        uow.commit()
    return [record.dossier_code for record in released]


def check_drift(command, uow, client):
    """``TraCuuHoSo`` each candidate; resend those the portal lost or shows in another status.

    Returns ``{"checked", "lost": [codes], "differ": [{dossier_code, ours, portal}]}``.
    """
    lost, differ = [], []
    for code, sent_status in command.candidates:
        found = client.look_up(code)
        if not found:
            lost.append(code)
            continue
        ours = str(status_code(sent_status)) if sent_status else ""
        theirs = str(found.get("TrangThaiHoSo", "")).strip()
        if theirs != ours:
            differ.append({"dossier_code": code, "ours": ours, "portal": theirs})
    if lost:
        release(Release(tuple(lost), from_scratch=True, now=command.now), uow)
    if differ:
        release(Release(tuple(item["dossier_code"] for item in differ), resend=True, now=command.now), uow)
    return {"checked": len(command.candidates), "lost": lost, "differ": differ}


# --- catch-up ----------------------------------------------------------------------------------------


def track_backfill_page(command, uow):
    """Track every dossier of one page and move the cursor, in one transaction; how many dossiers were new.

    A dossier already tracked is left alone (events keep it current), so a rerun
    or a page read twice changes nothing.
    """
    now = command.now or utcnow()
    with uow:
        added = uow.records.add_new([SyncRecord.backfilled(dossier, now) for dossier in command.dossiers])
        _backfill_job(uow).advance(command.next_cursor, command.total, now)
        uow.commit()
    return added


def finish_backfill(command, uow):
    """Mark the backfill finished (``restart``: forget the cursor so the next run starts over)."""
    now = command.now or utcnow()
    with uow:
        job = _backfill_job(uow)
        if command.restart:
            job.restart(now)
        else:
            job.finish(now)
        uow.commit()


def _backfill_job(uow):
    return uow.jobs.get(BACKFILL_JOB, for_update=True) or uow.jobs.add(BackfillJob(BACKFILL_JOB))


# --- reads -------------------------------------------------------------------------------------------


def backfill_position(uow):
    """``(cursor, total, finished_at)`` of the backfill."""
    with uow:
        job = uow.jobs.get(BACKFILL_JOB)
    return (job.cursor, job.total, job.finished_at) if job else (0, None, None)


def list_parked(uow, limit=1000):
    with uow:
        parked = uow.records.parked(limit)
    return [{
        "dossier_code": record.dossier_code,
        "parked_at": isoformat(record.parked_at),
        "status": (record.snapshot or {}).get("status"),
        "reason": record.last_error,
        "answer": record.parked_answer,
    } for record in parked]


def sync_stats(uow, now=None):
    """``{synced, pending, parked, oldest_pending_seconds}``."""
    now = now or utcnow()
    with uow:
        synced, pending, parked, oldest = uow.records.counts()
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=timezone.utc)
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return {"synced": synced, "pending": pending, "parked": parked, "oldest_pending_seconds": round(age, 3)}


def drift_candidates(uow, sample=None, after=None, chunk=500):
    """``(dossier_code, sent_status)`` the portal should have as we last sent them: a random sample, or a chunk."""
    with uow:
        return uow.records.synchronised(sample=sample, after=after, limit=chunk)
