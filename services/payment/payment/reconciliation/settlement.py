"""The normalised settlement file: header check and row validation.

Plain Python (no database): ``read_settlement`` turns the lines of a file into
a stream of ``SettlementRow`` (valid rows and malformed ones with a reason),
one at a time, so a file of millions of lines never sits in memory.
"""
import csv
import re
from datetime import date, datetime, timedelta
from typing import NamedTuple

from portal_shared.errors import ValidationError
from portal_shared.timeutil import VN_TZ

HEADER = ("txn_ref", "gateway_txn_no", "amount", "status", "paid_at")
STATUSES = frozenset({"success", "failed", "refunded"})
# txn_ref is sent as vnp_TxnRef / MoMo orderId: letters, digits and a few separators
_REFERENCE = re.compile(r"[A-Za-z0-9_.:/-]{1,64}\Z")
_AMOUNT = re.compile(r"[0-9]{1,18}\Z")


class SettlementRow(NamedTuple):
    """One data line; ``reason`` is None for a valid row, else why it is malformed."""

    line: int
    txn_ref: str | None
    gateway_txn_no: str | None
    amount: int | None
    status: str | None
    paid_at: datetime | None
    reason: str | None = None


def check_header(first_record):
    """Refuse a file whose first line is not the normalised header."""
    names = tuple(field.strip().lstrip("\ufeff").lower() for field in (first_record or []))
    if names != HEADER:
        got = ",".join(first_record or []) or "an empty file"
        raise ValidationError(
            {"settlement_csv": [f"the first line must be the header {','.join(HEADER)!r}, got {got[:200]!r}"]}
        )


def parse_paid_at(text):
    """An aware datetime from ISO 8601; without an offset the time is Vietnam time."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=VN_TZ)
    return moment


def parse_record(line, record):
    """Validate one CSV record into a ``SettlementRow`` (malformed rows carry a reason)."""
    if len(record) != len(HEADER):
        txn_ref = record[0].strip() if record and _REFERENCE.match(record[0].strip()) else None
        return SettlementRow(line, txn_ref, None, None, None, None, f"expected 5 fields, found {len(record)}")
    txn_ref, gateway_txn_no, amount, status, paid_at = (field.strip() for field in record)
    if not txn_ref:
        return SettlementRow(line, None, None, None, None, None, "missing txn_ref")
    if not _REFERENCE.match(txn_ref):
        return SettlementRow(line, None, None, None, None, None, f"invalid txn_ref {txn_ref[:40]!r}")
    if gateway_txn_no and not _REFERENCE.match(gateway_txn_no):
        return SettlementRow(line, txn_ref, None, None, None, None, f"invalid gateway_txn_no {gateway_txn_no[:40]!r}")
    if not _AMOUNT.match(amount) or int(amount) <= 0:
        return SettlementRow(line, txn_ref, None, None, None, None, f"bad amount {amount[:40]!r}: expected a positive integer number of VND")
    status = status.lower()
    if status not in STATUSES:
        return SettlementRow(line, txn_ref, None, None, None, None, f"unknown status {status[:40]!r}: expected success, failed or refunded")
    if paid_at:
        try:
            moment = parse_paid_at(paid_at)
        except ValueError:
            return SettlementRow(line, txn_ref, None, None, None, None, f"bad paid_at {paid_at[:40]!r}: expected ISO 8601")
    elif status == "failed":
        moment = None  # a failed attempt was never paid
    else:
        return SettlementRow(line, txn_ref, None, None, None, None, f"missing paid_at for a {status} row")
    return SettlementRow(line, txn_ref, gateway_txn_no or None, int(amount), status, moment)


def read_settlement(lines):
    """Check the header of ``lines`` (an iterable of text lines), then stream its rows.

    Raises ``ValidationError`` at once when the header is wrong; every other
    problem is a malformed ``SettlementRow`` with its line number, and the run goes on.
    """
    reader = csv.reader(lines)
    try:
        check_header(next(reader))
    except StopIteration:
        check_header(None)
    except csv.Error as exc:
        raise ValidationError({"settlement_csv": [f"unreadable header: {exc}"]}) from None
    return _rows(reader)


def _rows(reader):
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a NUL byte
            yield SettlementRow(reader.line_num, None, None, None, None, None, f"unreadable CSV: {exc}")
            continue
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # blank line
        yield parse_record(reader.line_num, record)


def vn_date(moment):
    """The Vietnam calendar date of an aware datetime."""
    return moment.astimezone(VN_TZ).date()


def date_ranges(dates):
    """Merge a set of dates into sorted inclusive ``(first, last)`` runs of consecutive days."""
    ranges = []
    for day in sorted(dates):
        if ranges and ranges[-1][1] + timedelta(days=1) == day:
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def vn_day_bounds(first: date, last: date):
    """UTC-aware ``[start, end)`` covering Vietnam days ``first`` to ``last`` inclusive."""
    start = datetime.combine(first, datetime.min.time(), tzinfo=VN_TZ)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=VN_TZ)
    return start, end
