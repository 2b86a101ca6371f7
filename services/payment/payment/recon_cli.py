"""Console command for operators: reconcile a gateway's settlement file.

    python -m payment.recon_cli --gateway vnpay settlement-2026-11-25.csv --out reports/
    python -m payment.recon_cli --show 42 --out reports/     # render a stored run again
    python -m payment.recon_cli --list                        # the latest runs

The database is ``PAYMENT_DATABASE_URL`` (default ``sqlite:///var/payment.db``).
Each run is stored; its full report is written as CSV and as a one-page HTML
with a chart of the outcomes. Exit status: 0 done, 2 refused (bad arguments,
wrong header), 1 other failure.
"""
import argparse
import io
import os
import re
import sys
import time

import sqlalchemy as sa

from payment.gateways import GATEWAY_NAMES
from payment.reconciliation import reconcile_file_on
from payment.reconciliation.reports import LABELS, RunNotFound, get_run, list_runs, render_html, summary, write_csv
from portal_shared.config import env_or
from portal_shared.db import create_db_engine
from portal_shared.errors import ValidationError

# Startup matters for a command run by hand: Alembic is loaded only when the schema is behind.
SERVICE = "payment"
MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations", "versions")


class _CountingRaw(io.RawIOBase):
    """Reports every block read from the file, to drive the progress bar."""

    def __init__(self, raw, on_read):
        self._raw = raw
        self._on_read = on_read

    def readable(self):
        return True

    def readinto(self, buffer):
        count = self._raw.readinto(buffer)
        self._on_read(count or 0)
        return count


def _parser():
    parser = argparse.ArgumentParser(prog="python -m payment.recon_cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", help="settlement CSV: txn_ref,gateway_txn_no,amount,status,paid_at")
    parser.add_argument("--gateway", choices=GATEWAY_NAMES, help="the gateway whose settlement this is")
    parser.add_argument("--out", default="var/reconciliation", help="directory for the CSV and HTML reports")
    parser.add_argument("--show", type=int, metavar="RUN_ID", help="print and write the reports of a stored run")
    parser.add_argument("--list", action="store_true", help="list the latest stored runs")
    parser.add_argument("--database-url", default=None, help="overrides PAYMENT_DATABASE_URL")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-migrate", action="store_true", help="do not bring the schema up to date first")
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        pass
    elif args.show is None and (not args.file or not args.gateway):
        parser.error("give --gateway and FILE to reconcile, --show RUN_ID or --list")
    url = args.database_url or env_or("PAYMENT_DATABASE_URL") or _service()[2]
    engine = create_db_engine(url)
    try:
        if not args.no_migrate and not _schema_at_head(engine):
            from portal_shared.migrations import upgrade_database

            upgrade_database(engine, _service()[0])
        if args.list:
            return _list(engine)
        run_id = args.show
        if run_id is None:
            run_id = _reconcile(engine, args)
            if run_id is None:
                return 2
        return _report(engine, run_id, args.out)
    finally:
        engine.dispose()


def _service():
    """(script location, URL variable, default URL) of the service's migrations."""
    from portal_shared.migrations import SERVICES

    return SERVICES[SERVICE]


_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.M)


def _script_heads(directory=MIGRATIONS):
    """The head revisions of the migration scripts, read from their text; None when unsure."""
    revisions, parents = set(), set()
    try:
        names = [name for name in os.listdir(directory) if name.endswith(".py") and not name.startswith("_")]
    except OSError:
        return None
    for name in names:
        with open(os.path.join(directory, name), encoding="utf-8") as handle:
            found = dict(match.groups() for match in _REVISION.finditer(handle.read()))
        revision, parent = found.get("revision", ""), found.get("down_revision", "")
        if not re.fullmatch(r"[\"'][\w-]+[\"']", revision) or not re.fullmatch(r"None|[\"'][\w-]+[\"']", parent):
            return None  # a merge (tuple of parents), a computed value...: let Alembic decide
        revisions.add(revision[1:-1])
        if parent != "None":
            parents.add(parent[1:-1])
    return (revisions - parents) or None


def _schema_at_head(engine):
    """Whether ``alembic_version`` already names the scripts' head: then there is nothing to migrate
    and Alembic need not be loaded. Any doubt (no table yet, unreadable scripts) says no."""
    heads = _script_heads()
    if heads is None:
        return False
    try:
        with engine.connect() as connection:
            current = set(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    except sa.exc.DBAPIError:
        return False
    return current == heads


def _gateway_confirmer():
    """The gateways of this environment (same variables as the service) confirm each fix."""
    from payment.gateways import PaymentSettings
    from payment.reconciliation.confirm import gateway_confirmer

    return gateway_confirmer(PaymentSettings(os.environ))


def _reconcile(engine, args):
    if not os.path.isfile(args.file):
        print(f"error: no such file {args.file}", file=sys.stderr)
        return None
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=os.path.getsize(args.file), unit="B", unit_scale=True, unit_divisor=1024,
                   desc="reading", file=sys.stderr)

    def on_read(count):
        if count:
            bar.update(count)
        elif not bar.disable:
            bar.set_description("matching")
            bar.refresh()

    started = time.monotonic()
    try:
        run_id = reconcile_file_on(
            engine, args.gateway, args.file, confirm=_gateway_confirmer(),
            wrap=(lambda raw: io.BufferedReader(_CountingRaw(raw, on_read), 1 << 16)) if bar else None,
        )
    except ValidationError as exc:
        print(f"error: the file was refused: {'; '.join(m for ms in exc.fields.values() for m in ms)}", file=sys.stderr)
        return None
    finally:
        if bar is not None:
            bar.close()
    print(f"reconciled in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return run_id


def _report(engine, run_id, out_dir):
    with engine.connect() as connection:
        try:
            run = get_run(connection, run_id)
        except RunNotFound as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(format_summary(summary(run)))
        os.makedirs(out_dir, exist_ok=True)
        base = os.path.join(out_dir, f"reconciliation-{run.gateway}-{run.id}")
        write_csv(connection, run.id, base + ".csv")
        render_html(connection, run.id, base + ".html")
    print(f"\nreports: {base}.csv  {base}.html")
    return 0


def format_summary(totals):
    """The run's counts as a small text table."""
    lines = [f"Reconciliation run {totals['run_id']} · {totals['gateway']} · {totals['source'] or '-'} · {totals['started_at']}",
             "",
             f"  {'outcome':<24}{'count':>12}",
             f"  {'-' * 24}{'-' * 12}",
             f"  {'rows in the file':<24}{totals['rows']:>12,}"]
    for name, label in LABELS.items():
        lines.append(f"  {label:<24}{totals[name]:>12,}")
    return "\n".join(lines)


def _list(engine):
    with engine.connect() as connection:
        runs = list_runs(connection)
    print(f"{'run':>6}  {'gateway':<8}{'started':<34}{'rows':>12}{'matched':>12}  findings  source")
    for run in runs:
        totals = summary(run)
        findings = sum(totals[name] for name in LABELS if name != "matched")
        print(f"{run.id:>6}  {run.gateway:<8}{totals['started_at']:<34}{run.rows:>12,}{run.matched:>12,}  {findings:>8,}  {run.source or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
