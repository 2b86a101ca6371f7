"""Benchmark of settlement reconciliation: 1,000,000 payments against a 1,000,000-line file.

    .venv/bin/pip install -r bench/requirements.txt     # pandas, for the baseline
    .venv/bin/python bench/reconciliation_bench.py [--payments 1000000] [--each 3000] [--with-gateway]

Creates a dedicated database (``bench_payment_recon`` on the server of
``BENCH_DATABASE_URL``, default the local PostgreSQL), loads the payments with
COPY (then VACUUM ANALYZE and CHECKPOINT, so that neither autovacuum nor a
checkpoint for the load runs during a measured command), writes a settlement
file with ``--each`` rows of every discrepancy, then runs as child processes, each measured for wall time and peak RSS (``wait4``):

1. what a finance engineer would otherwise write: pandas ``read_sql`` +
   ``read_csv`` + ``merge`` (it only finds the differences; it fixes nothing);
2. the console command ``python -m payment.recon_cli`` (finds, fixes, stores,
   writes the CSV and HTML reports).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from portal_shared.db import create_db_engine
from portal_shared.migrations import upgrade_database

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DAY = datetime(2026, 11, 24, 17, 0, tzinfo=timezone.utc)  # 2026-11-25 00:00 in Vietnam
LIMIT_SECONDS, LIMIT_MB = 30, 300


class Chunks:
    """File-like reader over generated text chunks, for ``copy_expert``."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)

    def read(self, size=-1):
        return next(self._chunks, "")


def batched(lines, size=5000):
    batch = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def plan(total, each):
    """Which payment index gets which discrepancy (the rest match)."""
    kinds = ["fixed", "missing_at_gateway", "amount_mismatch", "status_mismatch", "malformed"]
    return {kind: range(1 + n * each, 1 + (n + 1) * each) for n, kind in enumerate(kinds)}


def kind_of(index, ranges):
    for kind, indexes in ranges.items():
        if index in indexes:
            return kind
    return "matched"


def amount_of(index):
    return 10_000 * (1 + index % 50)


def paid_at_of(index):
    return DAY + timedelta(seconds=(index * 7) % 86_400)


def create_database(server_url, name):
    admin = create_db_engine(server_url.set(database="postgres").render_as_string(hide_password=False))
    admin = admin.execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server_url.set(database=name).render_as_string(hide_password=False)


def load_payments(engine, total, ranges):
    created = DAY - timedelta(hours=1)

    def lines():
        for i in range(1, total + 1):
            kind = kind_of(i, ranges)
            status = "pending" if kind == "fixed" else "succeeded"
            paid = "" if kind == "fixed" else paid_at_of(i).isoformat()
            txn_no = "" if kind == "fixed" else str(50_000_000 + i)
            yield (f"B{i:09d}\tD{i:09d}\t{amount_of(i)}\tvnpay\t{status}\t{txn_no}\t{created.isoformat()}\t"
                   f"{(created + timedelta(minutes=15)).isoformat()}\t{paid or chr(92) + 'N'}\t{created.isoformat()}\n")

    def charges():
        for i in ranges["fixed"]:
            yield f"D{i:09d}\t{amount_of(i)}\tdue\t{created.isoformat()}\t{created.isoformat()}\n"

    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.copy_expert(
                "COPY payments (txn_ref, dossier_code, amount, gateway, status, gateway_txn_no, created_at, expires_at, "
                "paid_at, updated_at) FROM STDIN", Chunks(batched(lines())))
            cursor.copy_expert("COPY charges (dossier_code, amount, status, created_at, updated_at) FROM STDIN",
                               Chunks(batched(charges())))
        raw.commit()
    finally:
        raw.close()
    # The table as production has it, long since vacuumed by autovacuum: otherwise autovacuum
    # starts on the fresh million rows during the measured commands (and a checkpoint for the
    # load's WAL), taking one of the two cores from whichever command runs at that moment.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE payments, charges"))
        connection.execute(sa.text("CHECKPOINT"))


def write_settlement(path, total, each, ranges):
    def lines():
        yield "txn_ref,gateway_txn_no,amount,status,paid_at\n"
        for i in range(1, total + 1):
            kind = kind_of(i, ranges)
            if kind == "missing_at_gateway":
                continue
            amount, status = amount_of(i), "success"
            if kind == "amount_mismatch":
                amount += 1_000
            elif kind == "status_mismatch":
                status = "refunded"
            paid = paid_at_of(i).astimezone(timezone(timedelta(hours=7))).isoformat()
            if kind == "malformed":
                yield f"B{i:09d},{50_000_000 + i},{amount}.5O,{status},{paid}\n"
            else:
                yield f"B{i:09d},{50_000_000 + i},{amount},{status},{paid}\n"
        for n in range(each):  # paid at the gateway, unknown here
            yield f"X{n:09d},{90_000_000 + n},{amount_of(n)},success,{paid_at_of(n).isoformat()}\n"

    with open(path, "w", encoding="utf-8") as handle:
        for chunk in batched(lines(), 20_000):
            handle.write(chunk)


def measure(command, env, log_path):
    """Run ``command``; return (wall seconds, peak RSS in MB, exit status) of that child alone."""
    with open(log_path, "w") as log:
        started = time.monotonic()
        child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, child.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--each", type=int, default=3_000, help="rows of each discrepancy")
    parser.add_argument("--database", default="bench_payment_recon")
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--with-gateway", action="store_true",
                        help="a fake VNPay confirms the fixes (querydr each), so they are applied; without it "
                             "they are all recorded unconfirmed and nothing is fixed")
    args = parser.parse_args()

    server = sa.engine.make_url(os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    url = create_database(server, args.database)
    engine = create_db_engine(url)
    upgrade_database(engine, "payment:migrations")
    ranges = plan(args.payments, args.each)
    work = tempfile.mkdtemp(prefix="recon-bench-")
    settlement = os.path.join(work, "vnpay-settlement-2026-11-25.csv")

    started = time.monotonic()
    load_payments(engine, args.payments, ranges)
    loaded = time.monotonic() - started
    write_settlement(settlement, args.payments, args.each, ranges)
    print(f"setup: {args.payments:,} payments loaded with COPY in {loaded:.1f} s; settlement file "
          f"{os.path.getsize(settlement) / 2**20:.1f} MiB, {args.each:,} rows of each discrepancy")

    env = {**os.environ, "PAYMENT_DATABASE_URL": url}
    gateway = None
    if args.with_gateway:
        # every fix is confirmed with the gateway (querydr) before it is applied: a fake VNPay that knows them
        fixed = ranges["fixed"]
        gateway = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "confirming_vnpay.py"), str(fixed.start), str(fixed.stop - 1),
             (DAY - timedelta(hours=1)).isoformat()], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        api_url, tmn_code, hash_secret = gateway.stdout.readline().split()
        env.update(VNPAY_API_URL=api_url, VNPAY_TMN_CODE=tmn_code, VNPAY_HASH_SECRET=hash_secret)
    python = sys.executable
    results = []
    if not args.skip_pandas:
        wall, rss, status = measure([python, os.path.join(HERE, "pandas_baseline.py"), url, settlement], env,
                                    os.path.join(work, "pandas.log"))
        print(open(os.path.join(work, "pandas.log")).read().strip())
        results.append(("pandas read_sql + read_csv + merge (finds only)", wall, rss, status))
    wall, rss, status = measure(
        [python, "-m", "payment.recon_cli", "--gateway", "vnpay", settlement, "--out", os.path.join(work, "reports"),
         "--no-progress"], env, os.path.join(work, "recon.log"))
    print(open(os.path.join(work, "recon.log")).read().strip())
    results.append(("python -m payment.recon_cli (finds, fixes, stores, reports)", wall, rss, status))
    if gateway is not None:
        gateway.kill()
        gateway.wait()

    with engine.connect() as connection:
        counts = connection.execute(sa.text(
            "SELECT outcome, count(*) FROM reconciliation_items GROUP BY outcome ORDER BY outcome")).all()
        events = connection.execute(sa.text(
            "SELECT count(*) FROM outbox_messages WHERE event_type = 'payment_succeeded'")).scalar_one()
    engine.dispose()

    print(f"\n{'command':<62}{'wall s':>8}{'peak RSS MB':>13}{'exit':>6}")
    for name, wall, rss, status in results:
        print(f"{name:<62}{wall:>8.1f}{rss:>13.0f}{status:>6}")
    print("findings stored:", ", ".join(f"{name} {count:,}" for name, count in counts), f"; payment_succeeded events {events:,}")
    ours = results[-1]
    verdict = ours[1] <= LIMIT_SECONDS and ours[2] <= LIMIT_MB and ours[3] == 0
    if len(results) == 2:
        # with the gateway every fix waits for a querydr round trip, which pandas (it fixes nothing) never makes
        verdict = verdict and (args.with_gateway or ours[1] < results[0][1])
        print(f"speed-up over pandas: {results[0][1] / ours[1]:.1f}x wall, {results[0][2] / ours[2]:.1f}x memory")
    print(f"limits {LIMIT_SECONDS} s / {LIMIT_MB} MB: {'met' if verdict else 'NOT met'}; files in {work}")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
