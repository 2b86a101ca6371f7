"""The loader: the one place that knows which database a run is on.

It takes the run's turn, reads the file and fills the staging table
(``tables.recon_staging``, one row per non-blank line as ``settlement.parse_line``
reads it) and returns what the matcher needs to know of the file: how many
rows it has, and the Vietnam dates of its valid rows. Everything after the load
(duplicates, fixes, classification) is the matcher's, in SQL that runs
unchanged on both databases.

- ``CopyLoader`` (PostgreSQL): a transaction-scoped advisory lock per gateway
  makes concurrent runs take turns. The file streams in with ``COPY``: a chunk
  whose lines all have the common well-formed shape (``settlement.CLEAN_LINES``,
  one regex at C speed) goes in as it is, each line prefixed with its number,
  and PostgreSQL casts the fields while it copies; any other line is read by
  ``parse_line`` and goes in typed (or with its reason).
- ``BatchLoader`` (SQLite, what ``make run`` uses): the run's first statement
  writes, so SQLite's write lock makes runs take turns; every line goes through
  ``parse_line`` and the rows go in by batches of ``INSERT_BATCH``.
"""
import csv
import io
import time
import zlib
from contextlib import contextmanager
from typing import NamedTuple

import sqlalchemy as sa

from payment.reconciliation.settlement import CLEAN_LINE, CLEAN_LINES, check_header_line, numbered_chunks, parse_line, vn_date
from payment.reconciliation.tables import STAGING_COLUMNS, recon_staging
from portal_shared.logs import get_logger

log = get_logger(__name__)

LOCK_NAMESPACE = 7_300_101  # pg advisory lock (namespace, gateway): one run per gateway at a time
WORK_MEM = "128MB"
INSERT_BATCH = 5_000


class Loaded(NamedTuple):
    rows: int  # non-blank lines after the header
    dates: frozenset  # the Vietnam dates of the valid rows' paid_at


def loader_for(connection):
    """The loader for the database of ``connection`` (in the run's transaction)."""
    if connection.dialect.name == "postgresql":
        return CopyLoader(connection)
    return BatchLoader(connection)


class BatchLoader:
    """Python reads every line and inserts the rows by batches (SQLite)."""

    def __init__(self, connection):
        self._connection = connection

    def take_turn(self, gateway):
        """Nothing to do: the run's first statement writes, and SQLite lets one writer in at a time."""

    def load(self, lines):
        """Check the header of the text file ``lines``, fill the staging table with the rest."""
        check_header_line(lines.readline())
        recon_staging.create(self._connection)
        rows, dates, batch, last_day = 0, set(), [], None
        insert = recon_staging.insert()
        for number, chunk in numbered_chunks(lines.read):
            for line_number, line in enumerate(chunk.split("\n"), number):
                row = parse_line(line_number, line)
                if row is None:
                    continue
                rows += 1
                if row.reason is None and row.paid_at is not None:
                    day = vn_date(row.paid_at)
                    if day != last_day:  # files are mostly sorted by time: skip the set most of the time
                        dates.add(day)
                        last_day = day
                batch.append(row._asdict())
                if len(batch) >= INSERT_BATCH:
                    self._connection.execute(insert, batch)
                    batch = []
        if batch:
            self._connection.execute(insert, batch)
        # SQLite joins by nested loops: the matcher's joins on txn_ref need an index to probe
        self._connection.execute(sa.text("CREATE INDEX recon_staging_txn_ref ON recon_staging (txn_ref)"))
        return Loaded(rows, frozenset(dates))


# an empty unquoted field is NULL: a clean line's empty gateway_txn_no / paid_at, and its reason
_COPY_STAGING = f"COPY recon_staging ({', '.join(STAGING_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"
# The Vietnam dates of the valid rows: VN_TZ's fixed +07:00 as plain arithmetic (a time zone name costs a lookup per row)
_DATES = ("SELECT DISTINCT (paid_at AT TIME ZONE INTERVAL '+07:00')::date FROM recon_staging"
          " WHERE reason IS NULL AND paid_at IS NOT NULL")


class CopyLoader:
    """The file streams in with ``COPY`` into the typed staging table (PostgreSQL)."""

    def __init__(self, connection):
        self._connection = connection

    def take_turn(self, gateway):
        """Wait for any other run of ``gateway`` to end; tune this transaction for a million rows."""
        self._connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(:namespace, :key)"),
            {"namespace": LOCK_NAMESPACE, "key": _signed32(zlib.crc32(gateway.encode()))},
        )
        self._connection.execute(sa.text(f"SET LOCAL work_mem = '{WORK_MEM}'"))  # the hash joins stay in memory
        # JIT compiling these one-off statements costs more (0.3-1.5 s each) than it saves
        self._connection.execute(sa.text("SET LOCAL jit = off"))

    def load(self, lines):
        """Check the header of the text file ``lines``, copy the rest into the staging table."""
        check_header_line(lines.readline())
        started = time.monotonic()
        recon_staging.create(self._connection)
        counter = _Counter()
        _copy_into(self._connection)(_COPY_STAGING, _ChunkReader(copy_text(lines.read, counter)))
        copied = time.monotonic()
        # the columns the joins and filters use: sampling fewer columns halves the ANALYZE
        self._connection.execute(sa.text("ANALYZE recon_staging (line, txn_ref, status, reason)"))
        dates = frozenset(self._connection.execute(sa.text(_DATES)).scalars())
        log.info("reconciliation_loaded", rows=counter.rows, parsed=counter.parsed, copy_s=round(copied - started, 2),
                 dates_s=round(time.monotonic() - copied, 2))
        return Loaded(counter.rows, dates)


class _Counter:
    """How many rows went into the table, and how many of them Python had to parse."""

    def __init__(self):
        self.rows = 0
        self.parsed = 0


def copy_text(read, counter):
    """The rest of the file (its header already read) as CSV text for ``COPY recon_staging``."""
    for number, chunk in numbered_chunks(read):
        lines = chunk.split("\n")
        if CLEAN_LINES.fullmatch(chunk + "\n"):
            counter.rows += len(lines)
            yield "".join([f"{line_number},{line},\n" for line_number, line in enumerate(lines, number)])
        else:
            yield _mixed_lines(lines, number, counter)


def _mixed_lines(lines, number, counter):
    """CSV text for lines of which some are not clean: those are parsed, and go in typed or with their reason."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for line_number, line in enumerate(lines, number):
        if CLEAN_LINE.fullmatch(line):
            counter.rows += 1
            out.write(f"{line_number},{line},\n")
            continue
        row = parse_line(line_number, line)
        if row is None:
            continue
        counter.rows += 1
        counter.parsed += 1
        writer.writerow(row._replace(paid_at=row.paid_at.isoformat() if row.paid_at is not None else None))
    return out.getvalue()


class _ChunkReader:
    """A file-like object over text chunks, for ``cursor.copy_expert``."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._pending = ""

    def read(self, size=-1):
        while not self._pending:  # an empty chunk (blank lines only) is not the end: "" is, for psycopg2
            self._pending = next(self._chunks, None)
            if self._pending is None:
                self._pending = ""
                return ""
        if size is None or size < 0 or len(self._pending) <= size:
            text, self._pending = self._pending, ""
        else:
            text, self._pending = self._pending[:size], self._pending[size:]
        return text

    def readline(self, size=-1):  # pragma: no cover - psycopg2 only calls read()
        return self.read(size)


def _signed32(value):
    return value - (1 << 32) if value >= (1 << 31) else value


def _copy_into(connection):
    """``copy(sql, reader)``: a ``COPY ... FROM STDIN`` on the run's own DBAPI connection."""
    dbapi_connection = connection.connection.dbapi_connection

    def copy(sql, reader):
        with _without_green_wait(), dbapi_connection.cursor() as cursor:
            cursor.copy_expert(sql, reader, size=1 << 20)

    return copy


@contextmanager
def _without_green_wait():
    """psycopg2 refuses COPY while eventlet's wait callback is installed: lift it meanwhile.

    The COPY then blocks this OS thread (other green threads wait) for the
    seconds a large file takes to load; the rest of the run stays cooperative.
    Without eventlet (the console command) there is no callback and this does nothing.
    """
    import psycopg2.extensions

    callback = psycopg2.extensions.get_wait_callback()
    if callback is None:
        yield
        return
    psycopg2.extensions.set_wait_callback(None)
    try:
        yield
    finally:
        psycopg2.extensions.set_wait_callback(callback)
