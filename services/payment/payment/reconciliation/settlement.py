"""The normalised settlement file and its row rules: the one place that says what a valid line is.

Plain Python (no database). A file is read as physical lines (ending at
``\\n``, ``\\r\\n`` or ``\\r``), numbered from 1 with the header; ``parse_line``
turns one line into a ``SettlementRow`` (a valid row, or a malformed one with
its reason) or None for a blank line. Both loaders use it, so a line means the
same on PostgreSQL and on SQLite.

``CLEAN_LINES`` is a shortcut for the common well-formed shape, built from the
same field rules: every line it matches is one ``parse_line`` accepts as it
is, with an explicit UTC offset and a day of month no later than 28, so that
PostgreSQL's casts read its amount and paid_at exactly as ``parse_line`` does.
The PostgreSQL loader copies such chunks untouched; whatever it does not
match goes through ``parse_line``.
"""
import csv
import re
from datetime import date, datetime, timedelta
from typing import NamedTuple

from portal_shared.errors import ValidationError
from portal_shared.timeutil import VN_TZ

HEADER = ("txn_ref", "gateway_txn_no", "amount", "status", "paid_at")
STATUSES = ("success", "failed", "refunded")
UNPAID_STATUS = "failed"  # a failed attempt was never paid: its paid_at may be empty
READ_CHUNK = 1 << 20  # characters read from the file at a time

# txn_ref is sent as vnp_TxnRef / MoMo orderId: letters, digits and a few separators
_REFERENCE_CHAR = "[A-Za-z0-9_.:/-]"
_REFERENCE = re.compile(rf"{_REFERENCE_CHAR}{{1,64}}\Z")
_AMOUNT = re.compile(r"[0-9]{1,18}\Z")

# The shortcut (see the module's docstring): each part is a subset of the rule above it.
_CLEAN_AMOUNT = r"[1-9][0-9]{0,17}"  # positive, at most 18 digits, no leading zero
_CLEAN_PAID_AT = (r"[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
                  r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
                  r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
_CLEAN = (rf"{_REFERENCE_CHAR}{{1,64}},{_REFERENCE_CHAR}{{0,64}},{_CLEAN_AMOUNT},"
          rf"(?:(?:{'|'.join(STATUSES)}),{_CLEAN_PAID_AT}|{UNPAID_STATUS},)")
CLEAN_LINE = re.compile(_CLEAN)
CLEAN_LINES = re.compile(rf"(?:{_CLEAN}\n)*")  # a chunk of such lines, each ending with "\n"


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


def check_header_line(line):
    """``check_header`` for the file's first physical line (with or without its line ending)."""
    try:
        record = next(csv.reader([_without_ending(line)]), None) if line else None
    except csv.Error as exc:
        raise ValidationError({"settlement_csv": [f"unreadable header: {exc}"]}) from None
    check_header(record)


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
    elif status == UNPAID_STATUS:
        moment = None
    else:
        return SettlementRow(line, txn_ref, None, None, None, None, f"missing paid_at for a {status} row")
    return SettlementRow(line, txn_ref, gateway_txn_no or None, int(amount), status, moment)


def parse_line(number, line):
    """One physical line (no line ending) as a ``SettlementRow``; None for a blank line."""
    if "\x00" in line:  # PostgreSQL text cannot hold NUL: the line is read as both databases can store it
        line = line.replace("\x00", "\ufffd")
    if '"' in line:
        try:
            record = next(csv.reader([line]), [])
        except csv.Error as exc:
            return SettlementRow(number, None, None, None, None, None, f"unreadable CSV: {exc}")
    else:
        record = line.split(",")  # what the csv module reads from a line without quotes
    if not record or (len(record) == 1 and not record[0].strip()):
        return None
    return parse_record(number, record)


def read_settlement(lines):
    """Check the header of ``lines`` (an iterable of physical lines), then stream their rows.

    Raises ``ValidationError`` at once when the header is wrong; every other
    problem is a malformed ``SettlementRow`` with its line number.
    """
    lines = iter(lines)
    check_header_line(next(lines, None))
    return _rows(lines)


def _rows(lines):
    for number, line in enumerate(lines, 2):
        row = parse_line(number, _without_ending(line))
        if row is not None:
            yield row


def _without_ending(line):
    return line.rstrip("\r\n")


def numbered_chunks(read, first_line=2):
    """The rest of a file (its header already read) as ``(number of the first line, text)`` chunks.

    ``read(size)`` reads text. Each chunk holds whole lines joined by ``\\n``
    (line endings normalised, no final newline); lines are numbered as
    ``read_settlement`` numbers them, blank ones included.
    """
    number = first_line
    carry = ""
    while True:
        chunk = read(READ_CHUNK)
        if chunk:
            chunk = carry + chunk
            cut = max(chunk.rfind("\n"), chunk.rfind("\r", 0, len(chunk) - 1)) + 1
            if cut == 0:  # no line ends in this chunk yet (a final "\r" may be the first half of "\r\n")
                carry = chunk
                continue
            carry, chunk = chunk[cut:], chunk[:cut]
            chunk = chunk[:-2] if chunk.endswith("\r\n") else chunk[:-1]
        elif carry:
            chunk, carry = (carry[:-1] if carry.endswith("\r") else carry), ""
        else:
            return
        if "\r" in chunk:
            chunk = chunk.replace("\r\n", "\n").replace("\r", "\n")
        yield number, chunk
        number += chunk.count("\n") + 1


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
