"""What portal_sync knows of each dossier and of the portal's copy: the ``SyncRecord`` aggregate.

A record holds the latest copy of the dossier (``snapshot``, read again from
the dossier service when ``snapshot_stale``), what the portal already has
(``known_at_portal``, ``steps_sent`` history entries, ``sent_status``) and
whether something is waiting to go (``pending``), backing off
(``next_attempt_at``) or parked for an operator (``parked_at``, with the
portal's answer). ``BackfillJob`` is the cursor of a resumable backfill.
Plain Python: no Nameko, no SQLAlchemy.
"""
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from portal_sync.domain.records import progress_entries

ANSWER_LIMIT = 4000  # characters of a portal answer kept for the operator
ERROR_LIMIT = 1000


def bounded_answer(answer):
    text = json.dumps(answer, ensure_ascii=False, default=str)
    return answer if len(text) <= ANSWER_LIMIT else {"truncated": text[:ANSWER_LIMIT]}


@dataclass
class SyncRecord:
    dossier_code: str
    snapshot: dict | None = None
    snapshot_stale: bool = True
    known_at_portal: bool = False
    steps_sent: int = 0
    sent_status: str | None = None
    pending: bool = True
    pending_since: datetime | None = None
    next_attempt_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None
    parked_at: datetime | None = None
    parked_answer: dict | None = None
    synced_at: datetime | None = None

    @classmethod
    def first_seen(cls, dossier_code, now):
        """A dossier portal_sync hears of for the first time: pending, to be read from the dossier service."""
        return cls(dossier_code, pending_since=now)

    @classmethod
    def backfilled(cls, dossier, now):
        """A dossier as ``list_dossiers`` showed it: pending, with its snapshot already current."""
        return cls(dossier["code"], snapshot=dossier, snapshot_stale=False, pending_since=now)

    # --- what the events say ------------------------------------------------------------------------

    def mark_changed(self, now, refetch=True):
        """Something is new for the portal: pending (since the first change not yet sent); re-read if ``refetch``.

        ``SqlRecords.mark_changed`` applies this rule in one statement.
        """
        if not self.pending:
            self.pending_since = now
        self.pending = True
        if refetch:
            self.snapshot_stale = True

    # --- delivery -----------------------------------------------------------------------------------

    def is_due(self, now):
        return (self.pending and self.parked_at is None
                and (self.next_attempt_at is None or self.next_attempt_at <= now))

    @property
    def needs_snapshot(self):
        return self.snapshot_stale or self.snapshot is None

    def refreshed(self, snapshot):
        self.snapshot, self.snapshot_stale = snapshot, False

    def progress_due(self):
        """``CapNhatTienDoHoSoMC`` entries the portal does not have yet, oldest first."""
        return progress_entries(self.snapshot, self.steps_sent)

    def record_sent(self):
        """The portal accepted the dossier's record (``DongBoHoSoMC``)."""
        self.known_at_portal, self.sent_status = True, self.snapshot["status"]

    def step_sent(self):
        self.steps_sent += 1

    def delivered(self, now):
        self.pending, self.pending_since, self.next_attempt_at = False, None, None
        self.attempts, self.last_error, self.synced_at = 0, None, now

    def defer(self, error, now, backoff_seconds, max_backoff_seconds):
        """Try again later, after an exponential back-off (the dossier service was away)."""
        self.attempts = (self.attempts or 0) + 1
        delay = min(max_backoff_seconds, backoff_seconds * 2 ** (self.attempts - 1))
        self.next_attempt_at = now + timedelta(seconds=delay)
        self.last_error = str(error)[:ERROR_LIMIT]

    def adapter_away(self, error):
        """The portal's adapter is away: delivery backs off as a whole, so no time of its own. True if counted."""
        if not self.pending or self.parked_at is not None:
            return False
        self.attempts = (self.attempts or 0) + 1
        self.last_error = str(error)[:ERROR_LIMIT]
        return True

    def park(self, answer, reason, now):
        """Refused: kept for an operator with the answer, never sent again until released."""
        self.parked_at = now
        self.parked_answer = bounded_answer(answer)
        self.last_error = str(reason)[:ERROR_LIMIT]

    # --- operators ----------------------------------------------------------------------------------

    def release(self, now, resend=False, from_scratch=False):
        """Unparked and due now; ``resend`` reads the dossier again, ``from_scratch`` sends it as new."""
        if not self.pending:
            self.pending_since = now
        self.pending, self.parked_at, self.parked_answer = True, None, None
        self.attempts, self.next_attempt_at = 0, None
        if resend or from_scratch:
            self.snapshot_stale = True
        if from_scratch:
            self.known_at_portal, self.steps_sent = False, 0


@dataclass
class BackfillJob:
    """How far a backfill has read ``list_dossiers`` (``cursor`` of ``total``), and whether it finished."""

    name: str
    cursor: int = 0
    total: int | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None

    def advance(self, cursor, total, now):
        self.cursor, self.total, self.updated_at, self.finished_at = cursor, total, now, None

    def finish(self, now):
        self.finished_at, self.updated_at = now, now

    def restart(self, now):
        self.cursor, self.total, self.finished_at, self.updated_at = 0, None, None, now
