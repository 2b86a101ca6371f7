"""The backfill of 10,000 existing dossiers: batched, resumable after a kill, then delivered in batches."""
import io
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import sqlalchemy as sa

from dossier.orm import DossierRow, HistoryRow
from portal_shared.timeutil import utcnow
from tests.helpers import rpc_proxy, wait_for

COUNT = int(os.environ.get("BACKFILL_COUNT", 10_000))
STATUS_PATHS = [["submitted"], ["submitted", "accepted"], ["submitted", "accepted", "processing"],
                ["submitted", "accepted", "processing", "processed", "returned"]]


def load_existing_dossiers(dossier_db, count=COUNT):
    """Dossiers filed before portal_sync existed, written straight into the dossier database."""
    start = utcnow() - timedelta(days=30)
    dossiers, history = [], []
    for number in range(1, count + 1):
        path = STATUS_PATHS[number % len(STATUS_PATHS)]
        submitted = start + timedelta(seconds=number * 60)
        dossiers.append({
            "id": number, "code": f"UBND-PX-HN-261104-{number:06d}", "procedure_code": "KHAISINH-01",
            "procedure_name": "Đăng ký khai sinh", "agency_code": "UBND-PX-HN", "fee_amount": 0,
            "processing_days": 1, "fee_paid": False, "status": path[-1], "applicant_full_name": "Lê Văn Cường",
            "applicant_id_number": f"{number:012d}", "applicant_phone": "0912345678", "applicant_email": None,
            "applicant_address": None, "form_data": {"ten_tre": f"Bé {number}"}, "submitted_at": submitted,
            "due_at": submitted + timedelta(days=1) if len(path) > 1 else None, "paused_since": None,
            "processed_at": None,
        })
        history += [{"dossier_id": number, "status": status, "at": submitted + timedelta(seconds=step),
                     "actor": "can-bo", "note": None} for step, status in enumerate(path)]
    with dossier_db.engine.begin() as connection:
        connection.execute(sa.insert(DossierRow.__table__), dossiers)
        connection.execute(sa.insert(HistoryRow.__table__), history)
    return len(history)


def backfill_cursor(sync_database):
    with sync_database.engine.connect() as connection:
        row = connection.execute(sa.text("SELECT cursor FROM sync_jobs WHERE name = 'backfill'")).first()
        tracked = connection.execute(sa.text("SELECT count(*) FROM sync_dossiers")).scalar_one()
    return (row[0] if row else 0), tracked


def test_backfill_of_10000_dossiers_is_batched_and_resumes_after_a_kill(
        dossier_service, dossier_db, start_sync, national_portal, rabbit_config, sync_database, monkeypatch):
    from portal_sync import cli

    steps = load_existing_dossiers(dossier_db)
    env = {**os.environ, "PORTAL_SYNC_DATABASE_URL": sync_database.url, "AMQP_URI": rabbit_config["AMQP_URI"],
           "LOG_LEVEL": "WARNING"}
    first = subprocess.Popen([sys.executable, "-m", "portal_sync.cli", "backfill", "--page-size", "100"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for(lambda: backfill_cursor(sync_database)[0] >= 1000 or first.poll() is not None, timeout=120,
                 interval=0.02, message="the first backfill to get going")
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(10)
    _, progress_bar = first.communicate()
    assert b"backfill" in progress_bar and b"dossier" in progress_bar  # tqdm's bar on stderr
    cursor, tracked = backfill_cursor(sync_database)
    assert 1000 <= cursor < COUNT, "the first run should have been killed half-way"
    assert tracked == cursor  # every page and its cursor were committed together

    monkeypatch.setenv("PORTAL_SYNC_DATABASE_URL", sync_database.url)
    monkeypatch.setenv("AMQP_URI", rabbit_config["AMQP_URI"])
    out = io.StringIO()
    started = time.monotonic()
    assert cli.main(["backfill", "--page-size", "200", "--no-progress"], out=out) == 0
    resumed_seconds = time.monotonic() - started
    assert f"resuming the backfill at dossier {cursor}" in out.getvalue()
    assert f"backfill finished: {COUNT} dossiers read, {COUNT - cursor} newly tracked" in out.getvalue()
    assert backfill_cursor(sync_database) == (COUNT, COUNT)
    out = io.StringIO()
    assert cli.main(["backfill", "--no-progress"], out=out) == 0
    assert "already finished" in out.getvalue()

    started = time.monotonic()
    start_sync(PORTAL_SYNC_BATCH_SIZE=500)
    wait_for(lambda: len(national_portal.dossiers) == COUNT and sum(map(len, national_portal.progress.values()))
             == steps, timeout=120, interval=0.2, message="every dossier and step at the portal")
    delivery_seconds = time.monotonic() - started
    with rpc_proxy(rabbit_config) as rpc:
        wait_for(lambda: rpc.portal_sync.sync_stats()["synced"] == COUNT, timeout=10, message="stats")
    calls = [call for call in national_portal.calls if call["service"] == "DongBoHoSoMC"]
    assert len(calls) <= COUNT // 500 + 2, (len(calls), national_portal.rejected[:3], [len(c["data"]) for c in calls[:30]])  # batched: hundreds of dossiers a call
    assert national_portal.format_errors == []
    assert national_portal.statuses("UBND-PX-HN-261104-000003") == ["1", "2", "4", "9", "10"]
    print(f"\nbackfill: {COUNT - cursor} dossiers tracked in {resumed_seconds:.1f} s after the kill; "
          f"{COUNT} dossiers and {steps} steps delivered in {delivery_seconds:.1f} s, {len(calls)} DongBoHoSoMC calls")
