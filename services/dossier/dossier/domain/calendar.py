"""Working-day arithmetic for deadlines.

A working day is Monday to Friday and not a Vietnamese public holiday
(``holidays.VN``, which follows the lunar calendar for Tết and Hùng Kings'
day). Deadlines are computed in Vietnam time; durations here are whole
calendar days of 24 hours that count only when they fall on a working day.
"""
from datetime import date, datetime, time, timedelta
from functools import lru_cache

import holidays

from portal_shared.timeutil import VN_TZ

DAY = timedelta(days=1)


@lru_cache(maxsize=64)
def _holidays_for(year):
    return holidays.VN(years=year)


def load_holidays(*years):
    """Load (and keep) the holidays of ``years`` now rather than at the first deadline of each."""
    for year in years:
        _holidays_for(year)


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _holidays_for(day.year)


def add_working_days(start: datetime, days: int) -> datetime:
    """``start`` moved forward by ``days`` working days (same time of day, Vietnam time)."""
    moment = start.astimezone(VN_TZ)
    remaining = days
    while remaining > 0:
        moment += DAY
        if is_working_day(moment.date()):
            remaining -= 1
    return moment


def working_time_between(start: datetime, end: datetime) -> timedelta:
    """How much of the interval ``[start, end)`` falls on working days."""
    start, end = start.astimezone(VN_TZ), end.astimezone(VN_TZ)
    total = timedelta(0)
    cursor = start
    while cursor < end:
        next_midnight = datetime.combine(cursor.date() + DAY, time(0), tzinfo=VN_TZ)
        segment_end = min(end, next_midnight)
        if is_working_day(cursor.date()):
            total += segment_end - cursor
        cursor = segment_end
    return total


def add_working_time(start: datetime, duration: timedelta) -> datetime:
    """``start`` moved forward by ``duration`` of working time, skipping other days."""
    cursor = start.astimezone(VN_TZ)
    remaining = duration
    while remaining > timedelta(0):
        next_midnight = datetime.combine(cursor.date() + DAY, time(0), tzinfo=VN_TZ)
        if is_working_day(cursor.date()):
            available = next_midnight - cursor
            if remaining <= available:
                return cursor + remaining
            remaining -= available
        cursor = next_midnight
    return cursor
