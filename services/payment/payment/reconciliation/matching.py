"""The matcher: one run of reconciliation over the staging table the loader filled.

``reconcile_lines`` lets the loader (``loader.py``, the only place that knows
the database) take the run's turn and load the file, then runs one set of SQL
statements, the same on PostgreSQL and SQLite, so memory stays flat whatever
the file's size:

1. duplicates: the later lines of a txn_ref listed twice are malformed;
2. fixes: the pending/expired payments of this gateway that the file says
   succeeded with the same amount are candidates. Each is put to the gateway
   first (``confirm(candidate)``, ``confirm.gateway_confirmer``: VNPay
   querydr, MoMo query), before any row is locked; one it does not confirm is
   recorded as ``unconfirmed`` with the reason and left as it is. The
   confirmed ones are settled through the ``Payment`` aggregate and the unit
   of work (``fixing.py``), a chunk of locked payments at a time, so the same
   file run twice, or by two operators at once, fixes each payment once and
   records one ``payment_succeeded`` for it;
3. classification: one ``FULL JOIN`` of the file with ``payments`` gives each
   line not fixed its outcome (``AGREEING`` says which statuses agree), and
   each of this gateway's succeeded payments paid on the file's dates that no
   line names is missing at the gateway.

Every finding becomes a row of ``reconciliation_items``.
"""
import time

import sqlalchemy as sa

from payment.domain.model import SETTLEABLE, Status
from payment.gateways import GATEWAY_NAMES
from payment.orm import payments
from payment.reconciliation.fixing import ConfirmedSuccess, settle_confirmed
from payment.reconciliation.loader import loader_for
from payment.reconciliation.settlement import date_ranges, vn_day_bounds
from payment.reconciliation.tables import reconciliation_items, reconciliation_runs, recon_staging
from payment.unit_of_work import JoinedUnitOfWork
from portal_shared.errors import ValidationError
from portal_shared.logs import get_logger
from portal_shared.timeutil import utcnow

log = get_logger(__name__)

FIX_CHUNK = 2_000
SETTLEABLE_VALUES = sorted(status.value for status in SETTLEABLE)
FILE_OUTCOMES = ("fixed", "missing_locally", "amount_mismatch", "status_mismatch", "malformed")

# (gateway status, local statuses) that agree and need no action
AGREEING = {
    "success": (Status.succeeded.value, Status.refund_pending.value),  # a refund under way was a success that day
    "failed": (Status.failed.value, Status.expired.value),
    "refunded": (Status.refunded.value,),
}
FINDING_COLUMNS = ["run_id", "outcome", "line", "txn_ref", "dossier_code", "gateway_txn_no", "local_status",
                   "gateway_status", "local_amount", "gateway_amount", "paid_at", "reason"]


def check_gateway(gateway):
    name = (gateway or "").strip().lower()
    if name not in GATEWAY_NAMES:
        raise ValidationError({"gateway": [f"must be one of {', '.join(GATEWAY_NAMES)}"]})
    return name


def reconcile_lines(session, gateway, lines, source=None, now=None, *, confirm, call_id_stack=None):
    """Reconcile the settlement file ``lines`` (a text file object) inside the caller's transaction.

    ``session`` is the transaction's session (its ``connection()`` runs the
    SQL; the unit of work of the fix step uses it too). Returns the id of the
    stored run (see ``reports.build_report``). Raises ``ValidationError`` for an
    unknown gateway or a wrong header; nothing is stored then once the caller
    rolls back.
    """
    gateway = check_gateway(gateway)
    now = now or utcnow()
    connection = session.connection()
    loader = loader_for(connection)
    loader.take_turn(gateway)
    run_id = connection.execute(
        reconciliation_runs.insert().values(gateway=gateway, source=(source or "")[:255] or None, started_at=now)
        .returning(reconciliation_runs.c.id)
    ).scalar_one()
    steps = _Steps()
    loaded = loader.load(lines)
    steps.done("load")
    _mark_duplicates(connection)
    steps.done("duplicates")
    confirmed = _confirmed_successes(connection, gateway, run_id, confirm)
    steps.done("confirm")
    fixed = _settle(session, connection, confirmed, run_id, source, now, call_id_stack)
    steps.done("fix")
    _record_findings(connection, gateway, run_id, loaded.dates)
    steps.done("classify")
    recon_staging.drop(connection)
    counts = dict(
        connection.execute(
            sa.select(reconciliation_items.c.outcome, sa.func.count())
            .where(reconciliation_items.c.run_id == run_id)
            .group_by(reconciliation_items.c.outcome)
        ).all()
    )
    matched = loaded.rows - sum(counts.get(name, 0) for name in FILE_OUTCOMES)
    connection.execute(
        reconciliation_runs.update().where(reconciliation_runs.c.id == run_id)
        .values(rows=loaded.rows, matched=matched, counts=counts, finished_at=utcnow())
    )
    log.info("reconciliation_done", run_id=run_id, gateway=gateway, rows=loaded.rows, matched=matched, fixed=fixed,
             **{f"n_{name}": count for name, count in counts.items()}, **steps.seconds)
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


def _mark_duplicates(connection):
    """A txn_ref listed twice: the later lines are malformed, the first one counts."""
    staging = recon_staging
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


def _confirmed_successes(connection, gateway, run_id, confirm):
    """The candidates for a fix that the gateway confirms (the others are recorded as unconfirmed)."""
    staging = recon_staging
    candidates = connection.execute(
        sa.select(payments.c.id, payments.c.txn_ref, payments.c.dossier_code, payments.c.amount, payments.c.gateway,
                  payments.c.status, payments.c.created_at, staging.c.line, staging.c.gateway_txn_no,
                  staging.c.paid_at)
        .join(staging, staging.c.txn_ref == payments.c.txn_ref)
        .where(payments.c.gateway == gateway, payments.c.status.in_(SETTLEABLE_VALUES), staging.c.reason.is_(None),
               staging.c.status == "success", staging.c.amount == payments.c.amount)
        .order_by(payments.c.id)
    ).all()
    refused = _record_unconfirmed(connection, candidates, confirm, run_id)
    return [ConfirmedSuccess(row.id, row.line, row.gateway_txn_no, row.paid_at)
            for row in candidates if row.id not in refused]


def _settle(session, connection, confirmed, run_id, source, now, call_id_stack):
    """Settle the confirmed successes a chunk at a time, through the unit of work; return how many were fixed."""
    if not confirmed:
        return 0
    uow = JoinedUnitOfWork(session, call_id_stack)
    fixed = to_refund = 0
    for start in range(0, len(confirmed), FIX_CHUNK):
        findings = settle_confirmed(uow, confirmed[start:start + FIX_CHUNK], run_id, source, now)
        if findings:
            connection.execute(reconciliation_items.insert(), findings)
        fixed += len(findings)
        to_refund += sum(1 for finding in findings if finding["reason"])
    if to_refund:
        log.warning("reconciliation_payments_to_refund", run_id=run_id, count=to_refund)
    return fixed


def _record_unconfirmed(connection, candidates, confirm, run_id):
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


def _classify(staging, local, gateway, in_file):
    """The outcome and reason of a file row joined with its local payment (one SQL CASE each).

    A payment no row names (``in_file`` false) is ``missing_at_gateway``.
    """
    agreeing = sa.or_(*(
        sa.and_(staging.c.status == gateway_status, local.c.status.in_(local_statuses))
        for gateway_status, local_statuses in AGREEING.items()
    ))
    outcome = sa.case(
        (~in_file, "missing_at_gateway"),
        (staging.c.reason.is_not(None), "malformed"),
        (local.c.id.is_(None), "missing_locally"),
        (local.c.gateway != gateway, "missing_locally"),
        (staging.c.amount != local.c.amount, "amount_mismatch"),
        (agreeing, "matched"),
        else_="status_mismatch",
    ).label("outcome")
    reason = sa.case(
        (staging.c.reason.is_not(None), staging.c.reason),
        (sa.and_(in_file, local.c.id.is_not(None), local.c.gateway != gateway),
         sa.literal("the local payment is on gateway ") + local.c.gateway),
        else_=sa.null(),
    ).label("reason")
    return outcome, reason


def _paid_on(paid_at, dates):
    """``paid_at`` falls on one of ``dates`` (Vietnam days), as ranges of consecutive days."""
    return sa.or_(*(
        sa.and_(paid_at >= start, paid_at < end)
        for start, end in (vn_day_bounds(first, last) for first, last in date_ranges(dates))
    ))


def _record_findings(connection, gateway, run_id, dates):
    """Classify the file and find what it lacks in one statement: one FULL JOIN with ``payments``.

    The file's rows and the payments are compared once: a row of the file not
    fixed above gets its outcome; a payment no row of the file names (valid or
    not) is missing at the gateway when it is this gateway's, succeeded, and
    paid on one of the file's dates. Only what needs attention (everything but
    matched) is stored.
    """
    staging = recon_staging
    local = payments.alias("local")
    fixed = reconciliation_items.alias("fixed")
    in_file = staging.c.line.is_not(None)
    outcome, reason = _classify(staging, local, gateway, in_file)
    if dates:
        missing = sa.and_(~in_file, local.c.gateway == gateway, local.c.status == Status.succeeded.value,
                          _paid_on(local.c.paid_at, dates))
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
    connection.execute(
        reconciliation_items.insert().from_select(
            FINDING_COLUMNS,
            sa.select(*(classified.c[name] for name in FINDING_COLUMNS)).where(classified.c.outcome != "matched"),
        )
    )
