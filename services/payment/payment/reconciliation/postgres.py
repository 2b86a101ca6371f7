"""The PostgreSQL path of reconciliation: stream the file in with COPY, validate and match in SQL.

Python reads the file once, in large text chunks, splits it into physical
lines and numbers them. A chunk whose lines are all clean (the common
well-formed shape, confirmed by one regex over the chunk) goes to ``COPY`` as
it is, each line prefixed with its number, straight into the typed staging
table that matching uses: PostgreSQL casts the fields while it copies, and no
second pass rewrites the million rows. Any other line (quotes, spaces around
fields, the wrong number of fields, an odd date, a blank line) is read on its
own (by the ``csv`` module when it needs it), its fields stripped, and goes in
``unchecked`` with its amount and paid_at as text; one with the wrong number
of fields is reported malformed straight away (it still goes into the table,
with its reason, so that its ``txn_ref`` counts as listed in the file).

One ``UPDATE`` then validates the unchecked rows only, with cheap predicates,
and casts them under ``CASE`` (or gives them their reason).
"""
import csv
import io
import re
import time

import sqlalchemy as sa

from portal_shared.logs import get_logger

log = get_logger(__name__)

READ_CHUNK = 1 << 20  # characters read from the file at a time
# the typed staging table matching uses, plus the raw text of the fields of an "unchecked" line
STAGING_COLUMNS = ("line", "txn_ref", "gateway_txn_no", "amount", "status", "paid_at", "reason",
                   "raw_amount", "raw_paid_at", "unchecked")

# A line in the common, well-formed shape needs no check in SQL: Python's regex engine confirms
# a whole chunk of such lines at C speed (~0.5 s per million), where PostgreSQL's regexes would
# take several seconds. Anything else (days 29-31 included) is checked in SQL, one rule at a time.
_REF_PY = r"[A-Za-z0-9_.:/-]"
_PAID_PY = (r"[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
            r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
_CLEAN = (rf"{_REF_PY}{{1,64}},{_REF_PY}{{0,64}},[1-9][0-9]{{0,17}},"
          rf"(?:(?:success|failed|refunded),{_PAID_PY}|failed,)")
_CLEAN_LINE = re.compile(_CLEAN)
_CLEAN_LINES = re.compile(rf"(?:{_CLEAN}\n)*")

# a chunk (or a line) with none of these characters needs no CSV parsing nor stripping
_NEEDS_CSV = re.compile(r'["\s\x1c-\x1f]')

_CREATE_STAGING = (
    "CREATE TEMP TABLE recon_staging (line bigint, txn_ref text, gateway_txn_no text, amount bigint, status text,"
    " paid_at timestamptz, reason text, raw_amount text, raw_paid_at text, unchecked boolean) ON COMMIT DROP"
)
# an empty unquoted field is NULL: a clean line's empty gateway_txn_no / paid_at, every raw_* of a clean line
_COPY_STAGING = f"COPY recon_staging ({', '.join(STAGING_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"

_REF = "^[A-Za-z0-9_.:/-]+$"  # and at most 64 characters, checked apart: bounded repeats are slow in PostgreSQL regexes
_ISO = ("^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,6})?)?)?"
        "(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?$")
_C = 'COLLATE "C"'  # byte-wise comparison of digits
_BAD_PAID = "'bad paid_at ' || quote_literal(left(paid, 40)) || ': expected ISO 8601'"
_BAD_AMOUNT = "'bad amount ' || quote_literal(left(amount, 40)) || ': expected a positive integer number of VND'"

# The same checks, in the same order, as settlement.parse_record (the SQLite path), for the lines
# Python could not vouch for (``unchecked``): each is updated in place to its typed values, or to
# NULLs and its reason, in one scan. Each level is fenced with OFFSET 0 so that PostgreSQL computes each
# expression once per row instead of copying it into every place the level above refers to it.
_VALIDATE = f"""
UPDATE recon_staging AS s
SET (txn_ref, gateway_txn_no, amount, status, paid_at, reason, unchecked) = (
  SELECT CASE WHEN ref_ok THEN ref END,
         CASE WHEN reason IS NULL THEN NULLIF(gtn, '') END,
         CASE WHEN reason IS NULL THEN amount::bigint END,
         CASE WHEN reason IS NULL THEN status END,
         CASE WHEN reason IS NULL AND paid <> '' THEN paid::timestamptz END,
         reason,
         NULL::boolean
  FROM (
    SELECT ref, ref_ok, gtn, amount, status, paid,
      CASE
        WHEN reason IS NOT NULL THEN reason
        WHEN ref = '' THEN 'missing txn_ref'
        WHEN NOT ref_ok THEN 'invalid txn_ref ' || quote_literal(left(ref, 40))
        WHEN gtn <> '' AND (length(gtn) > 64 OR gtn !~ '{_REF}') THEN 'invalid gateway_txn_no ' || quote_literal(left(gtn, 40))
        WHEN amount = '' OR length(amount) > 18 OR translate(amount, '0123456789', '') <> '' THEN {_BAD_AMOUNT}
        WHEN amount::bigint <= 0 THEN {_BAD_AMOUNT}
        WHEN status NOT IN ('success', 'failed', 'refunded') THEN 'unknown status ' || quote_literal(left(status, 40)) || ': expected success, failed or refunded'
        WHEN paid = '' AND status <> 'failed' THEN 'missing paid_at for a ' || status || ' row'
        WHEN paid = '' THEN NULL
        WHEN paid !~ '{_ISO}' THEN {_BAD_PAID}
        WHEN substr(paid, 6, 2) {_C} NOT BETWEEN '01' AND '12' THEN {_BAD_PAID}
        WHEN substr(paid, 9, 2) {_C} NOT BETWEEN '01' AND '31' THEN {_BAD_PAID}
        WHEN substr(paid, 9, 2) {_C} > '28' AND substr(paid, 9, 2)::int > extract(day FROM
               make_date(substr(paid, 1, 4)::int, substr(paid, 6, 2)::int, 1) + interval '1 month' - interval '1 day')
          THEN {_BAD_PAID}
      END AS reason
    FROM (
      SELECT reason, ref, gtn, amount, paid, status,
             ref <> '' AND length(ref) <= 64 AND ref ~ '{_REF}' AS ref_ok
      FROM (
        SELECT s.reason AS reason, coalesce(s.txn_ref, '') AS ref, coalesce(s.gateway_txn_no, '') AS gtn,
               coalesce(s.raw_amount, '') AS amount, coalesce(s.raw_paid_at, '') AS paid,
               lower(coalesce(s.status, '')) AS status
        OFFSET 0
      ) AS raw
      OFFSET 0
    ) AS fields
    OFFSET 0
  ) AS checked
)
WHERE s.unchecked
"""


class ChunkReader:
    """A file-like object over text chunks, for ``cursor.copy_expert``."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._pending = ""

    def read(self, size=-1):
        if not self._pending:
            self._pending = next(self._chunks, "")
        if size is None or size < 0 or len(self._pending) <= size:
            text, self._pending = self._pending, ""
        else:
            text, self._pending = self._pending[:size], self._pending[size:]
        return text

    def readline(self, size=-1):  # pragma: no cover - psycopg2 only calls read()
        return self.read(size)


class LineCounter:
    """How many data lines (blank ones aside) went into the table, and how many of them SQL must check."""

    def __init__(self):
        self.rows = 0
        self.unchecked = 0


def copy_chunks(read, counter, first_line=2, size=READ_CHUNK):
    """The rest of the file (its header already read) as CSV text for ``COPY recon_staging``.

    Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` and are numbered like the csv module
    numbers them; NUL characters (which PostgreSQL text cannot hold) become U+FFFD.
    """
    number = first_line
    carry = ""
    while True:
        chunk = read(size)
        if chunk:
            chunk = carry + chunk
            cut = chunk.rfind("\n") + 1  # whole lines only, so line endings can be normalised
            if cut == 0:
                carry = chunk
                continue
            carry, chunk = chunk[cut:], chunk[:cut - 2 if chunk[cut - 2:cut] == "\r\n" else cut - 1]
        elif carry:
            chunk, carry = carry, ""
        else:
            return
        if "\r" in chunk:
            chunk = chunk.replace("\r\n", "\n").replace("\r", "\n")
        if "\x00" in chunk:
            chunk = chunk.replace("\x00", "\ufffd")
        lines = chunk.split("\n")
        if _CLEAN_LINES.fullmatch(chunk + "\n"):
            counter.rows += len(lines)
            yield "".join([f"{n},{line},,,,\n" for n, line in enumerate(lines, number)])
        else:
            yield _mixed_lines(lines, number, counter)
        number += len(lines)


def _mixed_lines(lines, number, counter):
    """CSV text for lines of which some need the csv module.

    A clean line goes in typed, as in ``copy_chunks``; any other line goes in
    ``unchecked``, its amount and paid_at as text in ``raw_amount`` and
    ``raw_paid_at`` (empty fields become NULL), for ``_VALIDATE``.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    parts = []
    for n, line in enumerate(lines, number):
        if _CLEAN_LINE.fullmatch(line):
            counter.rows += 1
            parts.append(f"{n},{line},,,,\n")
            continue
        if line.isascii() and not _NEEDS_CSV.search(line) and line.count(",") == 4:
            counter.rows += 1
            counter.unchecked += 1
            ref, gtn, amount, status, paid = line.split(",")
            parts.append(f"{n},{ref},{gtn},,{status},,,{amount},{paid},t\n")
            continue
        try:
            record = next(csv.reader([line]), [])
        except csv.Error as exc:
            counter.rows += 1
            counter.unchecked += 1
            writer.writerow((n, "", "", "", "", "", f"unreadable CSV: {exc}", "", "", "t"))
        else:
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line
            counter.rows += 1
            counter.unchecked += 1
            fields = [field.strip() for field in record]
            if len(fields) == 5:
                ref, gtn, amount, status, paid = fields
                writer.writerow((n, ref, gtn, "", status, "", "", amount, paid, "t"))
            else:
                writer.writerow((n, fields[0], "", "", "", "", f"expected 5 fields, found {len(fields)}", "", "", "t"))
        parts.append(out.getvalue())
        out.seek(0)
        out.truncate()
    return "".join(parts)


def load(connection, dbapi_copy, read):
    """Load the rest of the file into the typed TEMP table ``recon_staging``; return the number of rows.

    ``dbapi_copy(sql, reader)`` runs a ``COPY ... FROM STDIN`` on the connection.
    """
    started = time.monotonic()
    connection.execute(sa.text(_CREATE_STAGING))
    counter = LineCounter()
    dbapi_copy(_COPY_STAGING, ChunkReader(copy_chunks(read, counter)))
    copied = time.monotonic()
    if counter.unchecked:
        connection.execute(sa.text(_VALIDATE))
    # the columns the joins and filters use: sampling fewer columns halves the ANALYZE
    connection.execute(sa.text("ANALYZE recon_staging (line, txn_ref, status, reason)"))
    log.info("reconciliation_loaded", rows=counter.rows, unchecked=counter.unchecked,
             copy_s=round(copied - started, 2), validate_s=round(time.monotonic() - copied, 2))
    return counter.rows
