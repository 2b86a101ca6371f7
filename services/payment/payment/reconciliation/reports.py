"""Reports of stored reconciliation runs: the contract's dict, a CSV file and a one-page HTML.

The CSV and HTML renderers stream findings from ``reconciliation_items``, so a
run with a million findings is written without holding it in memory.
"""
import csv
import os

import sqlalchemy as sa

from payment.reconciliation.tables import OUTCOMES, reconciliation_items, reconciliation_runs
from portal_shared.timeutil import isoformat

# report key -> item column, per outcome (keys of the contract's detail dicts)
FIELDS = {
    "fixed": [("txn_ref", "txn_ref"), ("line", "line"), ("dossier_code", "dossier_code"), ("amount", "local_amount"),
              ("gateway_txn_no", "gateway_txn_no"), ("paid_at", "paid_at"), ("old_status", "local_status"),
              ("note", "reason")],
    "missing_locally": [("txn_ref", "txn_ref"), ("line", "line"), ("gateway_txn_no", "gateway_txn_no"),
                        ("amount", "gateway_amount"), ("status", "gateway_status"), ("paid_at", "paid_at"),
                        ("reason", "reason")],
    "missing_at_gateway": [("txn_ref", "txn_ref"), ("dossier_code", "dossier_code"), ("amount", "local_amount"),
                           ("gateway_txn_no", "gateway_txn_no"), ("paid_at", "paid_at")],
    "amount_mismatch": [("txn_ref", "txn_ref"), ("line", "line"), ("dossier_code", "dossier_code"),
                        ("local_amount", "local_amount"), ("gateway_amount", "gateway_amount"),
                        ("local_status", "local_status"), ("gateway_status", "gateway_status"),
                        ("gateway_txn_no", "gateway_txn_no")],
    "status_mismatch": [("txn_ref", "txn_ref"), ("line", "line"), ("dossier_code", "dossier_code"),
                        ("amount", "gateway_amount"), ("local_status", "local_status"),
                        ("gateway_status", "gateway_status"), ("gateway_txn_no", "gateway_txn_no"),
                        ("paid_at", "paid_at")],
    "malformed": [("line", "line"), ("reason", "reason")],
    "unconfirmed": [("txn_ref", "txn_ref"), ("reason", "reason"), ("line", "line"), ("dossier_code", "dossier_code"),
                    ("amount", "local_amount")],
}
CSV_COLUMNS = ["outcome", "line", "txn_ref", "dossier_code", "gateway_txn_no", "local_status", "gateway_status",
               "local_amount", "gateway_amount", "paid_at", "reason"]
LABELS = {
    "matched": "Matched",
    "fixed": "Fixed (now succeeded)",
    "missing_locally": "Missing locally",
    "missing_at_gateway": "Missing at gateway",
    "amount_mismatch": "Amount mismatch",
    "status_mismatch": "Status mismatch",
    "malformed": "Malformed lines",
    "unconfirmed": "Not confirmed by the gateway",
}


class RunNotFound(Exception):
    pass


def get_run(connection, run_id):
    run = connection.execute(sa.select(reconciliation_runs).where(reconciliation_runs.c.id == run_id)).one_or_none()
    if run is None:
        raise RunNotFound(f"no reconciliation run {run_id}")
    return run


def list_runs(connection, limit=20):
    return connection.execute(
        sa.select(reconciliation_runs).order_by(reconciliation_runs.c.id.desc()).limit(limit)
    ).all()


def summary(run):
    """``{gateway, rows, matched, <outcome>: count...}`` of a stored run."""
    counts = run.counts or {}
    return {"run_id": run.id, "gateway": run.gateway, "source": run.source, "started_at": isoformat(run.started_at),
            "rows": run.rows, "matched": run.matched, **{name: counts.get(name, 0) for name in OUTCOMES}}


def iter_items(connection, run_id, outcome=None, limit=None):
    """Findings of a run in report order (by outcome, then line or txn_ref), streamed."""
    statement = sa.select(reconciliation_items).where(reconciliation_items.c.run_id == run_id)
    if outcome is not None:
        statement = statement.where(reconciliation_items.c.outcome == outcome)
    statement = statement.order_by(
        reconciliation_items.c.outcome, reconciliation_items.c.line, reconciliation_items.c.txn_ref
    )
    if limit is not None:
        statement = statement.limit(limit)
    result = connection.execution_options(yield_per=5_000).execute(statement)
    try:
        yield from result
    finally:
        result.close()


def item_detail(item):
    """The contract's ``{txn_ref, ...details}`` dict of one finding (None fields left out)."""
    detail = {}
    for key, column in FIELDS[item.outcome]:
        value = getattr(item, column)
        if value is None:
            continue
        detail[key] = isoformat(value) if column == "paid_at" else value
    return detail


def build_report(connection, run_id):
    """The report of section 3.4 of the contract for a stored run."""
    run = get_run(connection, run_id)
    report = {"gateway": run.gateway, "rows": run.rows, "matched": run.matched, **{name: [] for name in OUTCOMES}}
    for item in iter_items(connection, run_id):
        report[item.outcome].append(item_detail(item))
    return report


def write_csv(connection, run_id, path):
    """Every finding of the run as one CSV file (matched rows are only counted)."""
    items = reconciliation_items.c
    statement = (
        sa.select(*(items[name] for name in CSV_COLUMNS))
        .where(items.run_id == run_id)
        .order_by(items.outcome, items.line, items.txn_ref)
    )
    paid_at = CSV_COLUMNS.index("paid_at")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        # plain tuples, a batch at a time: per-row attribute lookups cost more than the query
        result = connection.execution_options(yield_per=5_000).execute(statement)
        try:
            for rows in result.partitions():
                batch = [list(row) for row in rows]
                for row in batch:
                    if row[paid_at] is not None:
                        row[paid_at] = isoformat(row[paid_at])
                writer.writerows(batch)
        finally:
            result.close()
    return path


def bar_chart(counts, width=640, bar_height=26, gap=8, label_width=190):
    """Bars for each outcome as data for the inline SVG chart of the HTML report."""
    top = max([value for _, value in counts] + [1])
    span = width - label_width - 90
    bars = []
    for index, (name, value) in enumerate(counts):
        bars.append({
            "name": name, "label": LABELS[name], "value": value, "y": index * (bar_height + gap),
            "width": max(2 if value else 0, round(span * value / top)),
        })
    return {"width": width, "height": len(bars) * (bar_height + gap), "bar_height": bar_height,
            "label_width": label_width, "bars": bars}


def render_html(connection, run_id, path, sample=200):
    """A one-page HTML report: counts, an outcome chart, and the first ``sample`` findings of each kind."""
    import jinja2

    run = get_run(connection, run_id)
    totals = summary(run)
    counts = [("matched", run.matched)] + [(name, totals[name]) for name in OUTCOMES]
    sections = []
    for name in OUTCOMES:
        if not totals[name]:
            continue
        items = [item_detail(item) for item in iter_items(connection, run_id, outcome=name, limit=sample)]
        columns = [key for key, _ in FIELDS[name]]
        sections.append({"name": name, "label": LABELS[name], "count": totals[name], "columns": columns, "items": items})
    templates = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "templates_recon")
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(templates), autoescape=True)
    html = environment.get_template("report.html").render(
        run=totals, chart=bar_chart(counts), sections=sections, sample=sample,
        finished_at=isoformat(run.finished_at), labels=LABELS,
    )
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(html)
    return path
