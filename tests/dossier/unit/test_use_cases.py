"""Every dossier use case through the message bus, on a fake unit of work.

No broker, no database: these read as the rules of the service and run in a second.
"""
from datetime import datetime, timedelta

import pytest

from dossier import use_cases
from dossier.commands import ActOnDossier, ActOnDossiers, RecordPayment, SubmitDossier
from dossier.domain.model import InvalidTransition, Procedure, Status
from dossier.messagebus import MessageBus
from dossier.use_cases import DossierNamedTwice, DossierNotFound, UnknownProcedure
from portal_shared.auth import Caller
from portal_shared.errors import Forbidden
from portal_shared.timeutil import VN_TZ, isoformat
from tests.dossier.unit.fakes import FakeUnitOfWork

MONDAY = datetime(2026, 11, 2, 9, 0, tzinfo=VN_TZ)
CATALOGUE = {
    "LLTP-01": Procedure("LLTP-01", "Cấp Phiếu lý lịch tư pháp", "STP-HN", 200_000, 10),
    "KHAISINH-01": Procedure("KHAISINH-01", "Đăng ký khai sinh", "UBND-HK", 0, 1),
}
APPLICANT = {"full_name": "Nguyễn Văn An", "id_number": "001099012345", "phone": "0912345678",
             "email": "an.nguyen@example.vn", "address": "Hà Nội"}
CITIZEN = Caller("cong-dan", frozenset({"citizen"}), id_number=APPLICANT["id_number"])
OFFICER = Caller("can-bo-stp", frozenset({"officer"}), agencies=frozenset({"STP-HN"}))
CONSUMER = "dossier.on_payment_succeeded"


class Harness:
    def __init__(self):
        self.uow = FakeUnitOfWork()
        self.bus = MessageBus(self.uow, catalogue=CATALOGUE)

    def submit(self, procedure_code="LLTP-01", caller=None, now=MONDAY, applicant=APPLICANT):
        return self.bus.handle(SubmitDossier(procedure_code, dict(applicant), {"so_ban": 1}, caller=caller,
                                             now=now))

    def act(self, code, action, caller=None, note=None, now=MONDAY):
        return self.bus.handle(ActOnDossier(code, action, "Cán bộ A", note, caller=caller, now=now))

    def paid(self, code, event_id="evt-paid-1", now=MONDAY + timedelta(hours=1)):
        return self.bus.handle(RecordPayment(CONSUMER, event_id, code, now=now))

    def statuses(self, code):
        return [entry.status for entry in self.uow.dossier(code).history]

    def published(self, code):
        return [(payload["old_status"], payload["new_status"]) for payload in self.uow.events()
                if payload["dossier_code"] == code]


@pytest.fixture
def h():
    return Harness()


# --- submitting -------------------------------------------------------------------------------


def test_a_submitted_dossier_is_stored_with_its_history_and_one_event(h):
    dossier = h.submit(caller=CITIZEN)
    assert dossier.code.startswith("STP-HN-261102-") and dossier.status is Status.submitted
    stored = h.uow.dossier(dossier.code)
    assert stored.status is Status.submitted and stored.applicant.phone == "0912345678"
    assert [(entry.status, entry.actor) for entry in stored.history] == [(Status.submitted, "cong-dan")]
    [event] = h.uow.events("dossier_status_changed")
    assert event["old_status"] is None and event["new_status"] == "submitted" and event["status_code"] == 1
    assert event["fee_amount"] == 200_000 and event["procedure_code"] == "LLTP-01"
    assert event["applicant"] == {"full_name": "Nguyễn Văn An", "phone": "0912345678",
                                  "email": "an.nguyen@example.vn"}  # never the ID number
    assert event["occurred_at"] == isoformat(MONDAY) and event["event_id"]
    assert h.uow.store.outbox[0][2] == dossier.code  # the outbox orders by dossier


def test_an_unknown_procedure_stores_nothing(h):
    with pytest.raises(UnknownProcedure):
        h.submit("NO-SUCH")
    assert h.uow.store.dossiers == {} and h.uow.commits == 0


def test_a_citizen_submits_only_as_the_applicant(h):
    other = Caller("someone", frozenset({"citizen"}), id_number="001099099999")
    with pytest.raises(Forbidden):
        h.submit(caller=other)
    assert h.uow.store.dossiers == {} and h.uow.events() == []


def test_a_code_already_taken_is_drawn_again(h, monkeypatch):
    taken = h.submit().code
    codes = iter([taken, "STP-HN-261102-NEWONE"])
    monkeypatch.setattr(use_cases, "new_dossier_code", lambda agency_code, now: next(codes))
    dossier = h.submit()
    assert dossier.code == "STP-HN-261102-NEWONE"
    assert len(h.uow.store.dossiers) == 2 and len(h.uow.events()) == 2


# --- acting on a dossier -------------------------------------------------------------------------


def test_accepting_a_dossier_with_a_fee_asks_for_payment_in_one_transaction(h):
    code = h.submit().code
    commits = h.uow.commits
    dossier = h.act(code, "accept", caller=OFFICER)
    assert dossier.status is Status.payment_requested and h.uow.commits == commits + 1
    assert h.statuses(code) == [Status.submitted, Status.accepted, Status.payment_requested]
    assert h.uow.dossier(code).history[1].actor == "can-bo-stp"  # the verified caller, not the display name
    assert h.published(code)[1:] == [("submitted", "accepted"), ("accepted", "payment_requested")]
    accepted, payment_requested = h.uow.events()[1:]
    assert accepted["due_at"] == payment_requested["due_at"] == isoformat(dossier.due_at) is not None
    assert [entry.status for entry in dossier.history] == h.statuses(code)  # the RPC result shows it all


def test_accepting_a_free_dossier_goes_straight_to_accepted(h):
    code = h.submit("KHAISINH-01").code
    assert h.act(code, "accept").status is Status.accepted
    assert h.published(code)[1:] == [("submitted", "accepted")]


def test_a_forbidden_transition_changes_and_publishes_nothing(h):
    code = h.submit().code
    with pytest.raises(InvalidTransition):
        h.act(code, "finish")
    assert h.statuses(code) == [Status.submitted] and len(h.uow.events()) == 1


def test_an_officer_of_another_agency_may_not_act(h):
    code = h.submit().code
    stranger = Caller("can-bo-khac", frozenset({"officer"}), agencies=frozenset({"CA-HN"}))
    with pytest.raises(Forbidden):
        h.act(code, "accept", caller=stranger)
    assert h.statuses(code) == [Status.submitted] and len(h.uow.events()) == 1


def test_calls_on_different_dossiers_share_one_transaction_and_a_refused_one_stores_nothing(h):
    free, paid, finished, other = (h.submit("KHAISINH-01").code, h.submit().code, h.submit().code,
                                   h.submit("KHAISINH-01").code)
    stranger = Caller("can-bo-khac", frozenset({"officer"}), agencies=frozenset({"CA-HN"}))
    calls = (ActOnDossier(paid, "accept", "A", caller=OFFICER, now=MONDAY),
             ActOnDossier("STP-HN-000000-XXXXXX", "accept", "A", now=MONDAY),
             ActOnDossier(finished, "finish", "A", now=MONDAY),
             ActOnDossier(free, "accept", "A", caller=stranger, now=MONDAY),
             ActOnDossier(other, "accept", "A", now=MONDAY))
    events, commits = len(h.uow.events()), h.uow.commits
    results = h.bus.handle(ActOnDossiers(calls))
    assert results[0].status is Status.payment_requested and results[4].status is Status.accepted
    assert [type(result) for result in results[1:4]] == [DossierNotFound, InvalidTransition, Forbidden]
    assert h.uow.commits == commits + 1
    assert h.statuses(finished) == [Status.submitted] and h.statuses(free) == [Status.submitted]
    assert len(h.uow.events()) == events + 3  # accepted + payment_requested, accepted
    with pytest.raises(DossierNamedTwice):  # two calls on one dossier: the group commit runs them one by one
        h.bus.handle(ActOnDossiers((ActOnDossier(free, "accept", "A"), ActOnDossier(free, "reject", "A"))))


def test_acting_on_an_unknown_dossier(h):
    with pytest.raises(DossierNotFound):
        h.act("STP-HN-000000-XXXXXX", "accept")


def test_the_citizen_may_withdraw_their_own_dossier(h):
    code = h.submit().code
    assert h.act(code, "withdraw", caller=CITIZEN, note="nộp nhầm").status is Status.withdrawn
    assert h.published(code)[-1] == ("submitted", "withdrawn") and h.uow.events()[-1]["note"] == "nộp nhầm"


# --- payments -------------------------------------------------------------------------------------


def test_a_payment_moves_the_dossier_on_once_per_event(h):
    code = h.submit().code
    h.act(code, "accept")
    dossier = h.paid(code)
    assert dossier.status is Status.processing and dossier.fee_paid
    assert [entry.status for entry in dossier.history] == [Status.processing]  # only what the payment added
    stored = h.uow.dossier(code)
    assert stored.fee_paid and stored.paused_since is None
    assert [entry.status for entry in stored.history] == [Status.submitted, Status.accepted,
                                                          Status.payment_requested, Status.processing]
    assert h.published(code)[-1] == ("payment_requested", "processing")
    events = len(h.uow.events())
    assert h.paid(code) is None  # the same event again: nothing
    assert len(h.uow.events()) == events and h.statuses(code)[-1] is Status.processing


def test_a_second_payment_changes_nothing_but_is_claimed(h):
    code = h.submit().code
    h.act(code, "accept")
    h.paid(code, "evt-1")
    events = len(h.uow.events())
    assert h.paid(code, "evt-2").status is Status.processing
    assert len(h.uow.events()) == events and ("dossier.on_payment_succeeded", "evt-2") in h.uow.store.inbox


def test_a_payment_before_the_request_is_remembered_without_a_transition(h):
    code = h.submit().code
    dossier = h.paid(code)
    assert dossier.status is Status.submitted and h.uow.dossier(code).fee_paid
    assert h.statuses(code) == [Status.submitted] and len(h.uow.events()) == 1


def test_a_payment_for_an_unknown_dossier_keeps_no_claim(h):
    with pytest.raises(DossierNotFound):
        h.paid("STP-HN-000000-XXXXXX")
    assert h.uow.store.inbox == set()  # rolled back: a retry may take effect


# --- reads ----------------------------------------------------------------------------------------


def test_get_checks_who_may_read(h):
    code = h.submit().code
    assert use_cases.get_dossier(h.uow, code, caller=OFFICER).code == code
    assert use_cases.get_dossier(h.uow, code, caller=CITIZEN).code == code
    with pytest.raises(Forbidden):
        use_cases.get_dossier(h.uow, code, caller=Caller("x", frozenset({"officer"}), agencies=frozenset({"CA"})))
    with pytest.raises(DossierNotFound):
        use_cases.get_dossier(h.uow, "STP-HN-000000-XXXXXX")


def test_get_many_answers_each_code_once_in_the_order_given_and_names_the_missing(h):
    first = h.act(h.submit().code, "accept").code
    second = h.submit("KHAISINH-01").code
    unknown = "STP-HN-000000-XXXXXX"
    dossiers, missing = use_cases.get_dossiers(h.uow, [second, unknown, first, second, unknown])
    assert [dossier.code for dossier in dossiers] == [second, first]
    assert [entry.status for entry in dossiers[1].history] == h.statuses(first)  # with the whole history
    assert missing == [unknown]


def test_list_filters_pages_and_counts(h):
    first = h.submit().code
    second = h.submit(now=MONDAY + timedelta(minutes=1)).code
    h.submit("KHAISINH-01", now=MONDAY + timedelta(minutes=2))
    request = {"applicant_id_number": None, "status": None, "agency_code": None, "limit": 1, "offset": 0}
    page, total = use_cases.list_dossiers(h.uow, {**request, "agency_codes": ["STP-HN"]})
    assert total == 2 and [dossier.code for dossier in page] == [second]
    page, total = use_cases.list_dossiers(h.uow, {**request, "limit": 5, "offset": 1, "agency_codes": None})
    assert total == 3 and [dossier.code for dossier in page] == [second, first]


def test_stats_count_on_time_late_and_overdue(h):
    def walk(steps, procedure_code="KHAISINH-01"):
        code = h.submit(procedure_code).code
        for action, days in steps:
            h.act(code, action, now=MONDAY + timedelta(days=days))

    walk([("accept", 0), ("start", 0), ("finish", 0.5)])  # on time: due Tuesday 09:00
    walk([("accept", 0), ("start", 0), ("finish", 3)])  # late
    walk([("accept", 0), ("start", 0)])  # open and overdue
    walk([("refuse", 0)])
    stats = use_cases.dossier_stats(h.uow, {"agency_code": None, "since": None, "until": None},
                                    now=MONDAY + timedelta(days=10))
    assert (stats["on_time"], stats["late"], stats["finished"], stats["overdue_open"]) == (1, 1, 2, 1)
    assert stats["on_time_rate"] == pytest.approx(1 / 3)
    assert stats["by_status"]["processed"] == 2 and sum(stats["by_status"].values()) == 4
