"""Every portal_sync use case through the message bus, on a fake unit of work, dossier service and portal.

No broker, no database, no HTTP: these read as the rules of the synchronisation and run in a second.
"""
from datetime import datetime, timedelta, timezone

import pytest

from dossier.domain.model import Applicant, Dossier, Procedure
from dossier.schemas import dump_dossier
from portal_sync import use_cases
from portal_sync.catalogue import NationalCodes
from portal_sync.commands import (
    CheckDrift,
    DeliverDue,
    FinishBackfill,
    RecordFee,
    RecordStatusChange,
    RecordStatusChanges,
    Release,
    TrackBackfillPage,
)
from portal_sync.domain.records import PaidFee
from portal_sync.messagebus import MessageBus
from tests.portal_sync.unit.fakes import FakeDirectory, FakePortal, FakeUnitOfWork

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)
PROCEDURE = Procedure("LLTP-01", "Cấp Phiếu lý lịch tư pháp", "STP-HN", 200_000, 10)
APPLICANT = Applicant("Nguyễn Văn An", "001099012345", "0912345678", None, "Hà Nội")
CODES = NationalCodes({"LLTP-01": {"name": PROCEDURE.name, "national_code": "1.000123", "field_code": "G01",
                                   "field_name": "Tư pháp"}})
STATUS_CONSUMER = "portal_sync.on_dossier_status_changed"
FEE_CONSUMER = "portal_sync.on_payment_succeeded"


class Harness:
    def __init__(self):
        self.uow = FakeUnitOfWork()
        self.directory = FakeDirectory()
        self.portal = FakePortal()
        self.bus = MessageBus(self.uow, directory=self.directory, client=self.portal, codes=CODES)
        self.dossiers = {}

    def dossier(self, code, *actions):
        """The dossier service's copy of ``code`` after ``actions``; an event says it changed."""
        dossier = self.dossiers.get(code) or Dossier.submit(code, PROCEDURE, APPLICANT, {}, NOW)
        for action in actions:
            dossier.act(action, "can-bo", None, NOW)
        self.dossiers[code] = dossier
        self.directory.dossiers[code] = dump_dossier(dossier)
        return self.changed(code, event_id=f"{code}-{len(dossier.history)}")

    def changed(self, code, event_id, now=NOW):
        return self.bus.handle(RecordStatusChange(STATUS_CONSUMER, event_id, code, now=now))

    def fee(self, code, txn_ref="P1", event_id="fee-1", refunded=False):
        fee = PaidFee(txn_ref, 200_000, "vnpay", "2026-11-26T09:05:00+07:00")
        consumer = "portal_sync.on_payment_refunded" if refunded else FEE_CONSUMER
        return self.bus.handle(RecordFee(consumer, event_id, code, fee, refunded=refunded, now=NOW))

    def deliver(self, batch_size=50, now=NOW):
        return self.bus.handle(DeliverDue(batch_size, backoff_seconds=2.0, max_backoff_seconds=300.0, now=now))

    def records_sent(self, updating):
        return [record for records, flag in self.portal.sent("DongBoHoSoMC") if flag is updating
                for record in records]

    def steps_sent(self, code):
        return [entry["TrangThai"] for entries in self.portal.sent("CapNhatTienDoHoSoMC")
                for entry in entries if entry["MaHoSo"] == code]


@pytest.fixture
def h():
    return Harness()


# --- what the events tell us ----------------------------------------------------------------------


def test_a_status_change_makes_the_dossier_pending_once_per_event(h):
    assert h.dossier("D1") is True
    record = h.uow.record("D1")
    assert record.pending and record.snapshot_stale and record.pending_since == NOW
    assert h.changed("D1", event_id="D1-1", now=NOW + timedelta(minutes=1)) is False  # the same event again
    assert h.uow.record("D1").pending_since == NOW


def test_changes_arriving_together_are_recorded_in_one_transaction_each_event_once(h):
    h.dossier("D1")
    changes = [RecordStatusChange(STATUS_CONSUMER, event_id, code, now=NOW + timedelta(minutes=1))
               for event_id, code in (("D2-1", "D2"), ("D1-1", "D1"), ("D3-1", "D3"), ("D2-1", "D2"))]
    commits = h.uow.commits
    assert h.bus.handle(RecordStatusChanges(tuple(changes))) == [True, False, True, False]  # D1-1 seen; D2-1 twice
    assert h.uow.commits == commits + 1
    assert h.uow.record("D2").pending and h.uow.record("D3").pending
    assert h.uow.record("D1").pending_since == NOW


def test_a_later_change_keeps_the_time_of_the_first_change_not_yet_sent(h):
    h.dossier("D1")
    h.dossier("D1", "accept")
    assert h.uow.record("D1").pending_since == NOW


def test_a_fee_makes_the_dossier_pending_without_reading_it_again(h):
    h.dossier("D1")
    h.deliver()
    assert h.fee("D1") is True and h.fee("D1") is False
    record = h.uow.record("D1")
    assert record.pending and not record.snapshot_stale
    h.deliver()
    [record_sent] = h.records_sent(updating=True)
    assert [fee["MaPhiLePhi"] for fee in record_sent["DanhSachLePhi"]] == ["P1"]
    assert h.directory.reads == [["D1"]]  # read once, for the first delivery


def test_a_refunded_fee_leaves_the_fee_list(h):
    h.dossier("D1")
    h.fee("D1")
    h.fee("D1", event_id="refund-1", refunded=True)
    h.deliver()
    [record_sent] = h.records_sent(updating=False)
    assert record_sent["DanhSachLePhi"] == []


# --- delivery -------------------------------------------------------------------------------------


def test_a_new_dossier_is_sent_as_new_with_every_history_entry(h):
    h.dossier("D1", "accept")
    outcome = h.deliver()
    assert outcome["claimed"] == 1 and outcome["delivered"] == 1 and outcome["steps"] == 3
    [record_sent] = h.records_sent(updating=False)
    assert record_sent["MaHoSo"] == "D1" and record_sent["MaTTHC"] == "1.000123"
    assert record_sent["TrangThaiHoSo"] == "6"  # payment_requested
    assert h.steps_sent("D1") == ["1", "2", "6"]
    record = h.uow.record("D1")
    assert not record.pending and record.known_at_portal and record.steps_sent == 3
    assert record.sent_status == "payment_requested" and record.synced_at == NOW
    assert h.deliver()["claimed"] == 0  # nothing due any more


def test_a_known_dossier_is_updated_with_only_its_new_entries(h):
    h.dossier("D1")
    h.deliver()
    h.dossier("D1", "accept")
    outcome = h.deliver()
    assert outcome["delivered"] == 1 and outcome["steps"] == 2
    assert [record["MaHoSo"] for record in h.records_sent(updating=True)] == ["D1"]
    assert h.steps_sent("D1") == ["1", "2", "6"]  # the submission once, then what followed


def test_a_batch_is_claimed_oldest_change_first(h):
    for code in ("D3", "D1", "D2"):
        h.dossier(code)
    h.uow.store.records["D3"].pending_since = NOW - timedelta(minutes=5)
    assert h.deliver(batch_size=2)["claimed"] == 2
    assert [record["MaHoSo"] for record in h.records_sent(updating=False)] == ["D3", "D1"]
    assert h.uow.record("D2").pending


def test_a_dossier_another_delivery_holds_is_left_to_it(h):
    h.dossier("D1")
    h.dossier("D2")
    h.uow.store.busy.add("D1")
    assert h.deliver()["claimed"] == 1
    assert h.uow.record("D1").pending and not h.uow.record("D2").pending


def test_the_dossier_service_away_defers_with_back_off(h):
    h.dossier("D1")
    h.directory.available = False
    outcome = h.deliver()
    assert outcome["deferred"] == 1 and outcome["delivered"] == 0 and h.portal.calls == []
    record = h.uow.record("D1")
    assert record.pending and record.attempts == 1 and record.next_attempt_at == NOW + timedelta(seconds=2)
    assert "ConnectionRefusedError" in record.last_error
    assert h.deliver(now=NOW + timedelta(seconds=1))["claimed"] == 0  # not due yet
    h.directory.available = True
    assert h.deliver(now=NOW + timedelta(seconds=2))["delivered"] == 1
    assert h.uow.record("D1").attempts == 0 and h.uow.record("D1").last_error is None


def test_a_dossier_unknown_to_the_dossier_service_is_parked(h):
    h.changed("GHOST", event_id="ghost-1")
    outcome = h.deliver()
    assert outcome["parked"] == 1 and h.portal.calls == []
    record = h.uow.record("GHOST")
    assert record.parked_at == NOW and record.last_error == "dossier not found"


def test_a_batch_reads_its_stale_dossiers_in_one_call_and_parks_only_the_unknown_one(h):
    for code in ("D1", "D2", "D3"):
        h.dossier(code)
    h.changed("GHOST", event_id="ghost-1")
    outcome = h.deliver()
    assert h.directory.reads == [["D1", "D2", "D3", "GHOST"]]
    assert outcome["delivered"] == 3 and outcome["parked"] == 1
    assert h.uow.record("GHOST").last_error == "dossier not found"
    [(records, updating)] = h.portal.sent("DongBoHoSoMC")
    assert [record["MaHoSo"] for record in records] == ["D1", "D2", "D3"] and not updating


def test_the_dossier_service_away_defers_every_stale_dossier_of_the_batch(h):
    for code in ("D1", "D2", "D3"):
        h.dossier(code)
    h.directory.available = False
    outcome = h.deliver()
    assert outcome["claimed"] == 3 and outcome["deferred"] == 3 and h.portal.calls == []
    assert all(h.uow.record(code).attempts == 1 for code in ("D1", "D2", "D3"))


def test_a_refused_dossier_is_parked_and_the_others_of_its_batch_go(h):
    h.dossier("D1")
    h.dossier("D2")
    h.portal.refused.add("D2")
    outcome = h.deliver()
    assert outcome["delivered"] == 1 and outcome["parked"] == 1
    assert not h.uow.record("D1").pending
    parked = h.uow.record("D2")
    assert parked.pending and parked.parked_at == NOW and parked.parked_answer["error_code"] == "-1"
    assert h.deliver()["claimed"] == 0  # parked: never sent again until released
    [listed] = use_cases.list_parked(h.uow)
    assert listed["dossier_code"] == "D2" and listed["status"] == "submitted" and "refused" in listed["reason"]


def test_the_portal_away_keeps_every_dossier_and_counts_only_accepted_calls(h, monkeypatch):
    monkeypatch.setattr(use_cases, "STEPS_PER_CALL", 2)
    h.dossier("D1", "accept")  # 3 history entries: two progress calls
    h.portal.away_after = 2  # the record and the first progress call get through
    outcome = h.deliver()
    assert outcome["unavailable"] == 1 and outcome["deferred"] == 1 and outcome["delivered"] == 0
    record = h.uow.record("D1")
    assert record.pending and record.known_at_portal and record.steps_sent == 2 and record.attempts == 1
    assert record.next_attempt_at is None  # the loop backs off as a whole
    h.portal.away = False
    h.portal.away_after = None
    assert h.deliver()["delivered"] == 1
    assert h.steps_sent("D1") == ["1", "2", "6"]  # the rest only, in order


# --- operators ------------------------------------------------------------------------------------


def test_retry_unparks_and_delivery_takes_the_dossier_again(h):
    h.dossier("D1")
    h.portal.refused.add("D1")
    h.deliver()
    h.portal.refused.clear()
    assert h.bus.handle(Release(now=NOW)) == ["D1"]
    record = h.uow.record("D1")
    assert record.parked_at is None and record.parked_answer is None and record.pending
    assert h.deliver()["delivered"] == 1


def test_resend_from_scratch_sends_the_dossier_as_new_with_every_entry(h):
    h.dossier("D1", "accept")
    h.deliver()
    assert h.bus.handle(Release(("D1", "UNKNOWN"), resend=True, from_scratch=True, now=NOW)) == ["D1"]
    record = h.uow.record("D1")
    assert record.pending and record.snapshot_stale and not record.known_at_portal and record.steps_sent == 0
    h.deliver()
    assert len(h.records_sent(updating=False)) == 2 and h.steps_sent("D1") == ["1", "2", "6"] * 2


def test_drift_resends_what_the_portal_lost_or_shows_otherwise(h):
    for code in ("D1", "D2", "D3"):
        h.dossier(code)
    h.deliver()
    h.portal.known = {"D1": {"TrangThaiHoSo": "1"}, "D2": {"TrangThaiHoSo": "2"}}
    candidates = use_cases.drift_candidates(h.uow)
    assert candidates == [("D1", "submitted"), ("D2", "submitted"), ("D3", "submitted")]
    report = h.bus.handle(CheckDrift(candidates, now=NOW))
    assert report == {"checked": 3, "lost": ["D3"], "differ": [{"dossier_code": "D2", "ours": "1", "portal": "2"}]}
    assert not h.uow.record("D3").known_at_portal and h.uow.record("D2").known_at_portal
    assert h.uow.record("D2").snapshot_stale and not h.uow.record("D1").pending
    assert len(use_cases.drift_candidates(h.uow, sample=10)) == 1


def test_stats_count_synced_pending_and_parked(h):
    h.dossier("D1")
    h.deliver()
    h.dossier("D2")
    h.changed("GHOST", event_id="ghost-1", now=NOW - timedelta(minutes=1))
    h.uow.store.records["GHOST"].parked_at = NOW
    stats = use_cases.sync_stats(h.uow, now=NOW + timedelta(seconds=30))
    assert stats == {"synced": 1, "pending": 1, "parked": 1, "oldest_pending_seconds": 30.0}


# --- catch-up -------------------------------------------------------------------------------------


def test_a_backfill_tracks_new_dossiers_only_and_resumes_at_its_cursor(h):
    h.dossier("D1")
    h.deliver()
    page = [dump_dossier(Dossier.submit(code, PROCEDURE, APPLICANT, {}, NOW)) for code in ("D1", "D2")]
    assert use_cases.backfill_position(h.uow) == (0, None, None)
    assert h.bus.handle(TrackBackfillPage(page, next_cursor=2, total=5, now=NOW)) == 1
    assert use_cases.backfill_position(h.uow) == (2, 5, None)
    assert not h.uow.record("D1").pending  # tracked already: events keep it current
    new = h.uow.record("D2")
    assert new.pending and not new.snapshot_stale and new.snapshot["code"] == "D2"
    assert h.bus.handle(TrackBackfillPage(page, next_cursor=2, total=5, now=NOW)) == 0  # a page read twice
    h.bus.handle(FinishBackfill(now=NOW))
    assert use_cases.backfill_position(h.uow) == (2, 5, NOW)
    h.bus.handle(FinishBackfill(restart=True, now=NOW))
    assert use_cases.backfill_position(h.uow) == (0, None, None)
    h.deliver()
    assert h.directory.reads == [["D1"]]  # the backfilled snapshot is sent as it is
