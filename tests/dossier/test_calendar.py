"""Deadlines in working days, Vietnamese public holidays and the pause."""
from datetime import datetime, timedelta

from dossier.domain import calendar
from dossier.domain.model import Applicant, Dossier, Procedure, Status
from dossier.providers import WorkingCalendar
from portal_shared.timeutil import VN_TZ, utcnow

PROCEDURE = Procedure("GPLX-DOI", "Cấp đổi giấy phép lái xe", "SGTVT-HN", 0, 5)
APPLICANT = Applicant("Trần Thị Bình", "079188000123", "0987654321", None)


def test_due_at_skips_the_weekend():
    friday = datetime(2026, 11, 6, 10, 0, tzinfo=VN_TZ)
    # Mon 9, Tue 10, Wed 11, Thu 12, Fri 13
    assert calendar.add_working_days(friday, 5) == datetime(2026, 11, 13, 10, 0, tzinfo=VN_TZ)
    assert calendar.add_working_days(friday, 1) == datetime(2026, 11, 9, 10, 0, tzinfo=VN_TZ)


def test_due_at_skips_a_public_holiday_from_the_lunar_calendar():
    # Hùng Kings' Commemoration Day falls on Friday 16 April 2027 (10th day of the 3rd lunar month).
    friday = datetime(2027, 4, 9, 10, 0, tzinfo=VN_TZ)
    assert not calendar.is_working_day(datetime(2027, 4, 16).date())
    # Mon 12, Tue 13, Wed 14, Thu 15, (Fri 16 holiday, weekend), Mon 19
    assert calendar.add_working_days(friday, 5) == datetime(2027, 4, 19, 10, 0, tzinfo=VN_TZ)


def test_tet_is_not_a_working_day():
    # Tết 2027: the first day of the lunar year is Saturday 6 February 2027.
    assert not calendar.is_working_day(datetime(2027, 2, 8).date())
    assert not calendar.is_working_day(datetime(2027, 2, 9).date())


def test_accept_sets_due_at_in_working_days():
    friday = datetime(2026, 11, 6, 10, 0, tzinfo=VN_TZ)
    dossier = Dossier.submit("SGTVT-HN-261106-AAAAAA", PROCEDURE, APPLICANT, {}, friday)
    dossier.act("accept", "officer", None, friday)
    assert dossier.due_at == datetime(2026, 11, 13, 10, 0, tzinfo=VN_TZ)


def test_time_waiting_for_a_supplement_does_not_count():
    monday = datetime(2026, 11, 2, 9, 0, tzinfo=VN_TZ)
    dossier = Dossier.submit("SGTVT-HN-261102-BBBBBB", PROCEDURE, APPLICANT, {}, monday)
    dossier.act("accept", "officer", None, monday)
    dossier.act("start", "officer", None, monday)
    due_before = dossier.due_at
    assert due_before == datetime(2026, 11, 9, 9, 0, tzinfo=VN_TZ)
    # paused from Tuesday 09:00 to Thursday 09:00: two working days
    dossier.act("request_supplement", "officer", "Thiếu ảnh 3x4", monday + timedelta(days=1))
    assert dossier.status is Status.supplement_requested
    dossier.act("supplement", "citizen", None, monday + timedelta(days=3))
    assert dossier.due_at == datetime(2026, 11, 11, 9, 0, tzinfo=VN_TZ)


def test_a_pause_over_a_weekend_only_counts_working_time():
    friday = datetime(2026, 11, 6, 9, 0, tzinfo=VN_TZ)
    monday = friday + timedelta(days=3)
    # Friday 09:00 → Monday 09:00 holds 15 hours of Friday and 9 of Monday: one working day
    assert calendar.working_time_between(friday, monday) == timedelta(days=1)
    due = datetime(2026, 11, 13, 9, 0, tzinfo=VN_TZ)  # a Friday
    assert calendar.add_working_time(due, timedelta(days=1)) == datetime(2026, 11, 16, 9, 0, tzinfo=VN_TZ)


def test_the_service_loads_this_and_next_years_holidays_before_its_first_deadline():
    calendar._holidays_for.cache_clear()
    WorkingCalendar().setup()
    loaded = calendar._holidays_for.cache_info().currsize
    calendar.is_working_day(utcnow().date())
    calendar.is_working_day(utcnow().date().replace(year=utcnow().year + 1, month=1, day=1))
    assert loaded == 2
    assert calendar._holidays_for.cache_info().misses == 2  # the deadlines found both years loaded
