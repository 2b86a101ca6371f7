"""The dossier aggregate without broker or database."""
from datetime import datetime, timedelta

import pytest

from dossier.domain.model import (
    TRANSITIONS,
    Applicant,
    Dossier,
    InvalidTransition,
    Procedure,
    Status,
    on_time_rate,
)
from portal_shared.timeutil import VN_TZ

PAID = Procedure("LLTP-01", "Cấp Phiếu lý lịch tư pháp", "STP-HN", 200_000, 10)
FREE = Procedure("KHAISINH-01", "Đăng ký khai sinh", "UBND-PX-HN", 0, 1)
APPLICANT = Applicant("Nguyễn Văn An", "001099012345", "0912345678", "an@example.vn")
# Monday 2 November 2026, 09:00 in Hanoi
MONDAY = datetime(2026, 11, 2, 9, 0, tzinfo=VN_TZ)


def dossier_in(status, procedure=FREE):
    dossier = Dossier.submit("STP-HN-261102-ABCDEF", procedure, APPLICANT, {}, MONDAY)
    dossier.status = status
    dossier.due_at = MONDAY + timedelta(days=7) if status is not Status.submitted else None
    dossier.events.clear()
    return dossier


ALLOWED = [(action, source) for action, (sources, _) in TRANSITIONS.items() for source in sources]
FORBIDDEN = [
    (action, source)
    for action, (sources, _) in TRANSITIONS.items()
    for source in Status
    if source not in sources
]


def test_the_status_codes_are_the_national_ones():
    assert [(s.value, s.code) for s in Status] == [
        ("submitted", 1), ("accepted", 2), ("not_accepted", 3), ("processing", 4),
        ("supplement_requested", 5), ("payment_requested", 6), ("withdrawn", 7),
        ("stopped", 8), ("processed", 9), ("returned", 10),
    ]


@pytest.mark.parametrize("action,source", ALLOWED, ids=[f"{a}-from-{s.value}" for a, s in ALLOWED])
def test_each_allowed_transition_changes_status_and_raises_one_event(action, source):
    dossier = dossier_in(source)
    dossier.act(action, "officer-1", None, MONDAY + timedelta(hours=1))
    target = TRANSITIONS[action][1]
    assert dossier.status is target
    assert [(e.old_status, e.new_status) for e in dossier.events] == [(source, target)]
    assert dossier.history[-1].status is target and dossier.history[-1].actor == "officer-1"


@pytest.mark.parametrize("action,source", FORBIDDEN, ids=[f"{a}-from-{s.value}" for a, s in FORBIDDEN])
def test_every_other_transition_is_refused_and_changes_nothing(action, source):
    dossier = dossier_in(source)
    history_before = list(dossier.history)
    with pytest.raises(InvalidTransition):
        dossier.act(action, "officer-1", None, MONDAY)
    assert dossier.status is source
    assert dossier.history == history_before and dossier.events == []


def test_accepting_a_paid_procedure_moves_on_to_payment_requested_with_two_events():
    dossier = dossier_in(Status.submitted, PAID)
    dossier.act("accept", "officer-1", None, MONDAY)
    assert dossier.status is Status.payment_requested
    assert [(e.old_status, e.new_status) for e in dossier.events] == [
        (Status.submitted, Status.accepted),
        (Status.accepted, Status.payment_requested),
    ]
    assert [h.status for h in dossier.history][-2:] == [Status.accepted, Status.payment_requested]


def test_a_recorded_payment_starts_processing_once():
    dossier = dossier_in(Status.submitted, PAID)
    dossier.act("accept", "officer-1", None, MONDAY)
    dossier.events.clear()
    assert dossier.record_payment(MONDAY + timedelta(hours=2)) is True
    assert dossier.status is Status.processing and dossier.fee_paid
    assert dossier.record_payment(MONDAY + timedelta(hours=3)) is False
    assert len(dossier.events) == 1


def test_on_time_rate_reproduces_the_published_gia_lai_figure():
    # Gia Lai to 26 May 2020: 153,705 on time, 890 late, 1,240 late and still open.
    rate = on_time_rate(on_time=153_705, late=890, overdue_open=1_240)
    assert round(rate * 100, 2) == 98.63
    assert 153_705 + 890 + 1_240 == 155_835
