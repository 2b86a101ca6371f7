"""Set-based reconciliation of a settlement file against the ``payments`` table.

The file streams into a per-run TEMP table (PostgreSQL ``COPY``; batched
inserts on SQLite) and is matched in SQL, so memory stays flat whatever its
size. Every finding becomes a row of ``reconciliation_items``.

Fixing goes through the ``Payment`` aggregate, a chunk of locked rows at a
time: only a payment still ``pending`` or ``expired`` (re-checked once locked)
is settled, so the same file run twice, or by two operators at once, fixes
each payment once and records one ``payment_succeeded`` for it (the message
bus's outbox handler, as for an IPN). On PostgreSQL a transaction-scoped advisory lock
per gateway also makes concurrent runs of one gateway take turns, so their
reports are consistent.

A candidate is fixed only when the gateway confirms it: ``confirm(candidate)``
(``confirm.gateway_confirmer``: VNPay querydr, MoMo query) is asked about each
pending/expired payment the file says succeeded with the same amount, before
any row is locked; one it does not confirm is recorded as ``unconfirmed`` with
the reason and left as it is.
"""
import csv
import io
import time
import zlib
from contextlib import contextmanager

from types import SimpleNamespace

import psycopg2.extensions
import sqlalchemy as sa

from payment import messagebus
from payment.domain.model import SETTLEABLE, Outcome, Source, Status
from payment.gateways import GATEWAY_NAMES
from payment.gateways.base import PaymentReport
from payment.orm import payments
from payment.reconciliation import postgres
from payment.reconciliation.settlement import check_header, date_ranges, read_settlement, vn_date, vn_day_bounds
from payment.reconciliation.tables import fix_table, reconciliation_items, reconciliation_runs, staging_table
from payment.repositories import SqlCharges, SqlPayments
from portal_shared.errors import ValidationError
from portal_shared.logs import get_logger
from portal_shared.outbox import PENDING_FLAG
from portal_shared.schema import outbox_table
from portal_shared.timeutil import isoformat, utcnow

log = get_logger(__name__)

FIXABLE = sorted(status.value for status in SETTLEABLE)
LOCK_NAMESPACE = 7_300_101  # pg advisory lock (namespace, gateway): one run per gateway at a time
FIX_CHUNK = 2_000
INSERT_BATCH = 5_000
WORK_MEM = "128MB"

# (gateway status, local statuses) that agree and need no action
AGREEING = {
    "success": (Status.succeeded.value, Status.refund_pending.value),  # a refund under way was a success that day
    "failed": (Status.failed.value, Status.expired.value),
    "refunded": (Status.refunded.value,),
}


def check_gateway(gateway):
    name = (gateway or "").strip().lower()
    if name not in GATEWAY_NAMES:
        raise ValidationError({"gateway": [f"must be one of {', '.join(GATEWAY_NAMES)}"]})
    return name


def reconcile_lines(session, gateway, lines, source=None, now=None, *, confirm):
    """Reconcile the settlement file given as text ``lines`` inside the caller's transaction.

    Returns the id of the stored run (see ``reports.build_report``). Raises
    ``ValidationError`` for an unknown gateway or a wrong header; nothing is
    stored then once the caller rolls back.
    """
    gateway = check_gateway(gateway)
    now = now or utcnow()
    connection = session.connection()
    is_pg = connection.dialect.name == "postgresql"
    if is_pg:
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(:namespace, :key)"),
            {"namespace": LOCK_NAMESPACE, "key": _signed32(zlib.crc32(gateway.encode()))},
        )
    # the first statement writes: on SQLite it takes the database's write lock up front
    run_id = connection.execute(
        reconciliation_runs.insert().values(gateway=gateway, source=(source or "")[:255] or None, started_at=now)
        .returning(reconciliation_runs.c.id)
    ).scalar_one()
    staging = staging_table()  # on PostgreSQL created by the load (CREATE TEMP TABLE ... AS)
    stats = _Stats()
    if not is_pg:
        staging.create(connection)
    try:
        steps = _Steps()
        if is_pg:
            _load_in_postgresql(connection, lines, stats)
        else:
            _insert_rows(connection, staging, stats.watch(read_settlement(lines)))
        steps.done("load")
        if is_pg:
            _mark_duplicates_in_postgresql(connection, stats)
        else:
            _mark_duplicates(connection, staging)
        steps.done("duplicates")
        if is_pg:
            fixed = _fix_pending_in_postgresql(session, connection, gateway, run_id, source, now, confirm)
        else:
            fixed = _fix_pending(session, connection, staging, gateway, run_id, source, now, confirm)
        steps.done("fix")
        if is_pg:
            _record_findings_in_postgresql(connection, staging, gateway, run_id, stats.dates)
        else:
            _record_file_findings(connection, staging, gateway, run_id)
            _record_missing_at_gateway(connection, staging, gateway, run_id, stats.dates)
        steps.done("classify")
    finally:
        if not is_pg:
            staging.drop(connection)
    counts = dict(
        connection.execute(
            sa.select(reconciliation_items.c.outcome, sa.func.count())
            .where(reconciliation_items.c.run_id == run_id)
            .group_by(reconciliation_items.c.outcome)
        ).all()
    )
    file_findings = sum(counts.get(name, 0) for name in ("fixed", "missing_locally", "amount_mismatch", "status_mismatch", "malformed"))
    matched = stats.rows - file_findings
    connection.execute(
        reconciliation_runs.update().where(reconciliation_runs.c.id == run_id)
        .values(rows=stats.rows, matched=matched, counts=counts, finished_at=utcnow())
    )
    log.info("reconciliation_done", run_id=run_id, gateway=gateway, rows=stats.rows, matched=matched, fixed=fixed, **{
        f"n_{name}": count for name, count in counts.items()
    }, **steps.seconds)
    return run_id


class _Steps:
    """Seconds spent in each step of a run, for the log."""

    def __init__(self):
        self.seconds = {}
        self._last = time.monotonic()

    def done(self, name):
        now = time.monotonic()
        self.seconds[f"{name}_s"] = round(now - self._last, 2)
        self._last = now


class _Stats:
    """Counts the rows and collects the Vietnam dates of valid rows as they stream past."""

    def __init__(self):
        self.rows = 0
        self.dates = set()

    def watch(self, rows):
        dates, last_day = self.dates, None
        for row in rows:
            self.rows += 1
            if row.reason is None and row.paid_at is not None:
                day = vn_date(row.paid_at)
                if day != last_day:  # files are mostly sorted by time: skip the set most of the time
                    dates.add(day)
                    last_day = day
            yield row


def _signed32(value):
    return value - (1 << 32) if value >= (1 << 31) else value


def _copy_into(connection):
    """``copy(sql, reader)``: a ``COPY ... FROM STDIN`` on the session's own DBAPI connection."""
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
    callback = psycopg2.extensions.get_wait_callback()
    if callback is None:
        yield
        return
    psycopg2.extensions.set_wait_callback(None)
    try:
        yield
    finally:
        psycopg2.extensions.set_wait_callback(callback)


# --- PostgreSQL: the file streams in with COPY and is validated in SQL (see postgres.py) ----

def _load_in_postgresql(connection, lines, stats):
    """Check the header, load the file into ``recon_staging`` and collect its Vietnam dates."""
    connection.execute(sa.text("SET LOCAL TimeZone = 'Asia/Ho_Chi_Minh'"))  # paid_at without offset: Vietnam time
    connection.execute(sa.text(f"SET LOCAL work_mem = '{WORK_MEM}'"))  # the hash joins of a million rows stay in memory
    # JIT compiling these one-off statements costs more (0.3-1.5 s each) than it saves
    connection.execute(sa.text("SET LOCAL jit = off"))
    if getattr(lines, "read", None) is None:
        lines = io.StringIO("".join(lines), newline="")
    header = lines.readline()
    try:
        first = next(csv.reader([header]), None) if header else None
    except csv.Error as exc:
        raise ValidationError({"settlement_csv": [f"unreadable header: {exc}"]}) from None
    check_header(first)
    stats.rows = postgres.load(connection, _copy_into(connection), lines.read)


# One scan of the valid rows, hashed two ways at once (GROUPING SETS): by txn_ref, to mark the
# later lines of a txn_ref listed twice, and by Vietnam date (VN_TZ's fixed +07:00, as vn_date and
# vn_day_bounds: plain arithmetic, where a time zone name costs a lookup per row) for the file's dates.
_DUPLICATES_AND_DATES = """
WITH groups AS MATERIALIZED (
  SELECT txn_ref, (paid_at AT TIME ZONE INTERVAL '+07:00')::date AS day, min(line) AS first_line,
         GROUPING(txn_ref) AS by_day
  FROM recon_staging
  WHERE reason IS NULL
  GROUP BY GROUPING SETS ((txn_ref), ((paid_at AT TIME ZONE INTERVAL '+07:00')::date))
  HAVING GROUPING(txn_ref) = 1 OR count(*) > 1
), marked AS (
  UPDATE recon_staging AS s SET reason = 'duplicate txn_ref, first listed on line ' || g.first_line::text
  FROM groups AS g
  WHERE g.by_day = 0 AND s.txn_ref = g.txn_ref AND s.line > g.first_line AND s.reason IS NULL
)
SELECT day FROM groups WHERE by_day = 1 AND day IS NOT NULL
"""


def _mark_duplicates_in_postgresql(connection, stats):
    """``_mark_duplicates``, and the Vietnam dates of the file's valid rows into ``stats.dates``."""
    stats.dates.update(connection.execute(sa.text(_DUPLICATES_AND_DATES)).scalars())


def _insert_rows(connection, staging, rows):
    batch = []
    for row in rows:
        batch.append(row._asdict())
        if len(batch) >= INSERT_BATCH:
            connection.execute(staging.insert(), batch)
            batch = []
    if batch:
        connection.execute(staging.insert(), batch)


def _mark_duplicates(connection, staging):
    """A txn_ref listed twice: the later lines are malformed, the first one counts."""
    first = (
        sa.select(staging.c.txn_ref, sa.func.min(staging.c.line).label("first_line"))
        .where(staging.c.reason.is_(None))
        .group_by(staging.c.txn_ref)
        .having(sa.func.count() > 1)
        .subquery()
    )
    connection.execute(
        staging.update()
        .where(staging.c.txn_ref == first.c.txn_ref, staging.c.line > first.c.first_line, staging.c.reason.is_(None))
        .values(reason=sa.literal("duplicate txn_ref, first listed on line ") + sa.cast(first.c.first_line, sa.String))
    )


def _unconfirmed(connection, candidates, confirm, run_id):
    """Ask the gateway about each candidate; record and return the ids of those it does not confirm."""
    refused, items = set(), []
    for candidate in candidates:
        reason = confirm(candidate)
        if reason is None:
            continue
        refused.add(candidate.id)
        items.append({
            "run_id": run_id, "outcome": "unconfirmed", "line": candidate.line, "txn_ref": candidate.txn_ref,
            "dossier_code": candidate.dossier_code, "gateway_txn_no": None, "local_status": candidate.status,
            "gateway_status": "success", "local_amount": candidate.amount, "gateway_amount": candidate.amount,
            "paid_at": None, "reason": str(reason)[:1000],
        })
    if items:
        connection.execute(reconciliation_items.insert(), items)
        log.warning("reconciliation_unconfirmed", run_id=run_id, count=len(items))
    return refused


CANDIDATE_COLUMNS = (payments.c.id, payments.c.txn_ref, payments.c.dossier_code, payments.c.amount,
                     payments.c.gateway, payments.c.status, payments.c.created_at)


def _fix_pending(session, connection, staging, gateway, run_id, source, now, confirm):
    """Move pending/expired payments the gateway settled (same amount) to succeeded, chunk by chunk."""
    total = 0
    refused = _unconfirmed(connection, connection.execute(
        sa.select(*CANDIDATE_COLUMNS, staging.c.line)
        .join(staging, staging.c.txn_ref == payments.c.txn_ref)
        .where(payments.c.gateway == gateway, payments.c.status.in_(FIXABLE), staging.c.reason.is_(None),
               staging.c.status == "success", staging.c.amount == payments.c.amount)
        .order_by(payments.c.id)
    ).all(), confirm, run_id)
    candidates = (
        sa.select(payments.c.id, staging.c.line, staging.c.paid_at, staging.c.gateway_txn_no)
        .join(staging, staging.c.txn_ref == payments.c.txn_ref)
        .where(
            payments.c.gateway == gateway,
            payments.c.status.in_(FIXABLE),
            staging.c.reason.is_(None),
            staging.c.status == "success",
            staging.c.amount == payments.c.amount,
            payments.c.id.not_in(sorted(refused)),
        )
        .order_by(payments.c.id)
        .limit(FIX_CHUNK)
    )
    if connection.dialect.name == "postgresql":
        # a concurrent IPN or run holding a row makes us wait, then re-check its status
        candidates = candidates.with_for_update(of=payments)
    while True:
        found = {row.id: row for row in connection.execute(candidates)}
        if not found:
            return total
        fixed = _settle_chunk(session, connection, found, run_id, source, now)
        if not fixed:
            return total
        total += fixed


def _fix_pending_in_postgresql(session, connection, gateway, run_id, source, now, confirm):
    """As ``_fix_pending``, but the join with the file runs once, into a small TEMP table of candidates.

    Candidates are then taken a chunk at a time in id order: their payments are
    locked, and only those still pending/expired (re-checked once locked) are updated.
    """
    connection.execute(sa.text(
        "CREATE TEMP TABLE recon_fix ON COMMIT DROP AS"
        " SELECT p.id, s.line, s.paid_at, s.gateway_txn_no"
        " FROM recon_staging s JOIN payments p ON p.txn_ref = s.txn_ref"
        " WHERE p.gateway = :gateway AND p.status IN :fixable AND s.reason IS NULL"
        " AND s.status = 'success' AND s.amount = p.amount"
    ).bindparams(sa.bindparam("fixable", expanding=True)), {"gateway": gateway, "fixable": list(FIXABLE)})
    connection.execute(sa.text("CREATE UNIQUE INDEX ON recon_fix (id)"))
    fix = fix_table()
    refused = _unconfirmed(connection, connection.execute(
        sa.select(*CANDIDATE_COLUMNS, fix.c.line).join(fix, fix.c.id == payments.c.id).order_by(payments.c.id)
    ).all(), confirm, run_id)
    if refused:
        connection.execute(fix.delete().where(fix.c.id.in_(sorted(refused))))
    next_ids = sa.select(fix.c.id).where(fix.c.id > sa.bindparam("after")).order_by(fix.c.id).limit(FIX_CHUNK)
    total, after = 0, 0
    while True:
        ids = connection.execute(next_ids, {"after": after}).scalars().all()
        if not ids:
            return total
        after = ids[-1]
        # a concurrent IPN or run holding a row makes us wait, then re-check its status
        found = {row.id: row for row in connection.execute(
            sa.select(payments.c.id, fix.c.line, fix.c.paid_at, fix.c.gateway_txn_no)
            .join(fix, fix.c.id == payments.c.id)
            .where(payments.c.id.in_(ids), payments.c.status.in_(FIXABLE))
            .order_by(payments.c.id)
            .with_for_update(of=payments)
        )}
        if found:
            total += _settle_chunk(session, connection, found, run_id, source, now)


class _BatchOutbox:
    """The outbox of a run: the bus's outbox handler adds rows, one multi-row INSERT stores a chunk's."""

    def __init__(self, connection, session):
        self._connection = connection
        self._session = session
        self._rows = []

    def add(self, event_type, payload, aggregate_key):
        self._rows.append({
            "event_id": payload["event_id"], "event_type": event_type, "aggregate_key": aggregate_key,
            "payload": payload, "headers": None, "created_at": utcnow(), "attempts": 0,
        })

    def flush(self):
        if self._rows:
            self._connection.execute(outbox_table.insert(), self._rows)
            self._session.info[PENDING_FLAG] = True  # wake the relay after commit
        self._rows = []


def _settle_chunk(session, connection, found, run_id, source, now):
    """Settle the locked payments of ``found`` (id → line, paid_at, gateway_txn_no) the file says succeeded.

    Each goes through ``Payment.settle`` with its dossier's charge, as for an
    IPN: the success pays the charge, unless the charge is already paid by
    another payment or gone, in which case the aggregate moves the payment on
    to refund_pending (the service's refund loop returns the money). The
    aggregates are stored a chunk at a time; their events go through the bus's
    in-transaction handlers (one ``payment_succeeded`` each, in the outbox).
    Returns how many were fixed.
    """
    charges = SqlCharges(connection)
    repository = SqlPayments(connection, charges)
    loaded = [payment for payment in repository.by_ids(sorted(found)) if payment.status in SETTLEABLE]
    by_dossier = charges.get_many_for_update({payment.dossier_code for payment in loaded})
    outbox = _BatchOutbox(connection, session)
    unit = SimpleNamespace(outbox=outbox)
    items, to_refund = [], 0
    for payment in loaded:
        fix = found[payment.id]
        old_status = payment.status
        payment.charge = by_dossier.get(payment.dossier_code)
        evidence = {"run_id": run_id, "file": source, "line": fix.line, "gateway_txn_no": fix.gateway_txn_no,
                    "amount": payment.amount, "paid_at": isoformat(fix.paid_at)}
        report = PaymentReport(payment.txn_ref, Outcome.succeeded, payment.amount, fix.gateway_txn_no, fix.paid_at)
        payment.settle(report, Source.reconciliation, now, evidence)
        for event in payment.events:
            messagebus.handle_in_transaction(event, unit)
        payment.events.clear()
        refund_reason = payment.refund_reason if payment.status is Status.refund_pending else None
        to_refund += refund_reason is not None
        items.append({
            "run_id": run_id, "outcome": "fixed", "line": fix.line, "txn_ref": payment.txn_ref,
            "dossier_code": payment.dossier_code, "gateway_txn_no": payment.gateway_txn_no,
            "local_status": old_status.value, "gateway_status": "success", "local_amount": payment.amount,
            "gateway_amount": payment.amount, "paid_at": payment.paid_at,
            "reason": f"to be refunded: {refund_reason}" if refund_reason else None,
        })
    if not loaded:
        return 0
    repository.save(loaded)
    charges.save(list(by_dossier.values()))
    outbox.flush()
    connection.execute(reconciliation_items.insert(), items)
    if to_refund:
        log.warning("reconciliation_payments_to_refund", run_id=run_id, count=to_refund)
    return len(loaded)


def _classify(staging, local, gateway, in_file=None):
    """The outcome and reason of a file row joined with its local payment (one SQL CASE each).

    With ``in_file`` (a FULL JOIN) a payment no row names is ``missing_at_gateway``.
    """
    agreeing = sa.or_(*(
        sa.and_(staging.c.status == gateway_status, local.c.status.in_(local_statuses))
        for gateway_status, local_statuses in AGREEING.items()
    ))
    first = [(~in_file, "missing_at_gateway")] if in_file is not None else []
    outcome = sa.case(
        *first,
        (staging.c.reason.is_not(None), "malformed"),
        (local.c.id.is_(None), "missing_locally"),
        (local.c.gateway != gateway, "missing_locally"),
        (staging.c.amount != local.c.amount, "amount_mismatch"),
        (agreeing, "matched"),
        else_="status_mismatch",
    ).label("outcome")
    on_other_gateway = sa.and_(local.c.id.is_not(None), local.c.gateway != gateway)
    if in_file is not None:
        on_other_gateway = sa.and_(in_file, on_other_gateway)
    reason = sa.case(
        (staging.c.reason.is_not(None), staging.c.reason),
        (on_other_gateway, sa.literal("the local payment is on gateway ") + local.c.gateway),
        else_=sa.null(),
    ).label("reason")
    return outcome, reason


FINDING_COLUMNS = ["run_id", "outcome", "line", "txn_ref", "dossier_code", "gateway_txn_no", "local_status",
                   "gateway_status", "local_amount", "gateway_amount", "paid_at", "reason"]


def _store_findings(connection, classified):
    """Store the classified rows that need attention (everything but matched)."""
    connection.execute(
        reconciliation_items.insert().from_select(
            FINDING_COLUMNS,
            sa.select(*(classified.c[name] for name in FINDING_COLUMNS)).where(classified.c.outcome != "matched"),
        )
    )


def _paid_on(paid_at, dates):
    """``paid_at`` falls on one of ``dates`` (Vietnam days), as ranges of consecutive days."""
    return sa.or_(*(
        sa.and_(paid_at >= start, paid_at < end)
        for start, end in (vn_day_bounds(first, last) for first, last in date_ranges(dates))
    ))

def _record_file_findings(connection, staging, gateway, run_id):
    """One statement classifies every line of the file not fixed above."""
    local = payments.alias("local")
    fixed = reconciliation_items.alias("fixed")
    outcome, reason = _classify(staging, local, gateway)
    classified = (
        sa.select(
            sa.literal(run_id).label("run_id"),
            outcome,
            staging.c.line,
            staging.c.txn_ref,
            local.c.dossier_code,
            sa.func.coalesce(staging.c.gateway_txn_no, local.c.gateway_txn_no).label("gateway_txn_no"),
            local.c.status.label("local_status"),
            staging.c.status.label("gateway_status"),
            local.c.amount.label("local_amount"),
            staging.c.amount.label("gateway_amount"),
            staging.c.paid_at,
            reason,
        )
        .select_from(staging.outerjoin(local, local.c.txn_ref == staging.c.txn_ref))
        .where(
            ~sa.exists().where(fixed.c.run_id == run_id, fixed.c.outcome == "fixed", fixed.c.line == staging.c.line)
        )
        .subquery()
    )
    _store_findings(connection, classified)


def _record_missing_at_gateway(connection, staging, gateway, run_id, dates):
    """This gateway's succeeded payments paid on the file's dates that the file lacks."""
    if not dates:
        return
    within = _paid_on(payments.c.paid_at, dates)
    missing = sa.select(
        sa.literal(run_id), sa.literal("missing_at_gateway"), payments.c.txn_ref, payments.c.dossier_code,
        payments.c.gateway_txn_no, payments.c.status, payments.c.amount, payments.c.paid_at,
    ).where(
        payments.c.gateway == gateway,
        payments.c.status == Status.succeeded.value,
        within,
        ~sa.exists().where(staging.c.txn_ref == payments.c.txn_ref),
    )
    connection.execute(
        reconciliation_items.insert().from_select(
            ["run_id", "outcome", "txn_ref", "dossier_code", "gateway_txn_no", "local_status", "local_amount", "paid_at"],
            missing,
        )
    )


def _record_findings_in_postgresql(connection, staging, gateway, run_id, dates):
    """``_record_file_findings`` and ``_record_missing_at_gateway`` in one statement: one FULL JOIN.

    The file's rows and the payments are hashed and compared once: a row of the
    file is classified as above; a payment no row of the file names (valid or
    not) is missing at the gateway when it is this gateway's, succeeded and
    paid on one of the file's dates.
    """
    local = payments.alias("local")
    fixed = reconciliation_items.alias("fixed")
    in_file = staging.c.line.is_not(None)
    outcome, reason = _classify(staging, local, gateway, in_file=in_file)
    if dates:
        within = _paid_on(local.c.paid_at, dates)
        missing = sa.and_(~in_file, local.c.gateway == gateway, local.c.status == Status.succeeded.value, within)
    else:
        missing = sa.false()
    classified = (
        sa.select(
            sa.literal(run_id).label("run_id"),
            outcome,
            staging.c.line,
            sa.func.coalesce(staging.c.txn_ref, local.c.txn_ref).label("txn_ref"),
            local.c.dossier_code,
            sa.func.coalesce(staging.c.gateway_txn_no, local.c.gateway_txn_no).label("gateway_txn_no"),
            local.c.status.label("local_status"),
            staging.c.status.label("gateway_status"),
            local.c.amount.label("local_amount"),
            staging.c.amount.label("gateway_amount"),
            sa.case((in_file, staging.c.paid_at), else_=local.c.paid_at).label("paid_at"),
            reason,
        )
        .select_from(staging.outerjoin(local, local.c.txn_ref == staging.c.txn_ref, full=True))
        .where(sa.or_(
            sa.and_(in_file, ~sa.exists().where(
                fixed.c.run_id == run_id, fixed.c.outcome == "fixed", fixed.c.line == staging.c.line)),
            missing,
        ))
        .subquery()
    )
    _store_findings(connection, classified)
