"""Reconciliation of settlement files against the real PostgreSQL (and a small SQLite file)."""
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from payment.gateways import PaymentSettings
from sandbox.fakes import FakeVnpay
from payment.orm import charges, payment_history, payments
from payment.reconciliation import reconcile_file, reconcile_text
from payment.reconciliation.confirm import gateway_confirmer
from payment.reconciliation.settlement import HEADER, read_settlement
from payment.reconciliation.tables import reconciliation_items, reconciliation_runs
from portal_shared.db import UnitOfWork, create_db_engine
from portal_shared.errors import ValidationError
from portal_shared.migrations import upgrade_database
from portal_shared.schema import outbox_table
from portal_shared.timeutil import VN_TZ

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAY = datetime(2026, 11, 25, 10, 0, tzinfo=VN_TZ)  # the settlement day, Vietnam time
HEADER_LINE = ",".join(HEADER)


# The gateway every run asks before fixing (the fake speaks VNPay's querydr): a payment is fixed only
# when it is settled there too; add_payment(..., gateway_paid=True) makes it so.
_GATEWAY = {}


@pytest.fixture(autouse=True)
def vnpay_gateway():
    fake = FakeVnpay().start()
    _GATEWAY["fake"] = fake
    yield fake
    fake.stop()
    _GATEWAY.clear()


def gateway_env():
    fake = _GATEWAY["fake"]
    return {"VNPAY_TMN_CODE": fake.tmn_code, "VNPAY_HASH_SECRET": fake.hash_secret, "VNPAY_API_URL": fake.api_url,
            "VNPAY_PAYMENT_URL": fake.payment_url}


def confirm():
    return gateway_confirmer(PaymentSettings(gateway_env()))


@pytest.fixture(scope="session")
def recon_database(fresh_database):
    return fresh_database("payment")


@pytest.fixture
def engine(recon_database):
    recon_database.truncate()
    return recon_database.engine


def unit_of_work(engine):
    return UnitOfWork(sessionmaker(bind=engine, expire_on_commit=False), relay=None)


def add_payment(engine, txn_ref, status="pending", amount=150_000, gateway="vnpay", paid_at=None,
                gateway_txn_no=None, dossier_code=None, charge="due", gateway_paid=False):
    """A payment (and, by default, the dossier's charge still due); ``gateway_paid``: VNPay knows it paid."""
    dossier_code = dossier_code or f"D-{txn_ref}"
    created = DAY - timedelta(hours=1)
    if gateway_paid:
        _GATEWAY["fake"].settled(txn_ref, amount, created)
    with engine.begin() as connection:
        connection.execute(payments.insert().values(
            txn_ref=txn_ref, dossier_code=dossier_code, amount=amount, gateway=gateway, status=status,
            pay_url="https://pay.example/x", gateway_txn_no=gateway_txn_no, created_at=created,
            expires_at=created + timedelta(minutes=15), paid_at=paid_at, updated_at=created,
        ))
        if charge and not connection.execute(sa.select(charges.c.dossier_code).where(charges.c.dossier_code == dossier_code)).first():
            connection.execute(charges.insert().values(
                dossier_code=dossier_code, amount=amount, status=charge,
                paid_txn_ref=txn_ref if charge == "paid" else None, created_at=created, updated_at=created,
            ))


def settlement(*rows):
    return "\n".join([HEADER_LINE, *rows]) + "\n"


def payment(engine, txn_ref):
    with engine.connect() as connection:
        return connection.execute(sa.select(payments).where(payments.c.txn_ref == txn_ref)).one()


def outbox_events(engine, event_type="payment_succeeded"):
    with engine.connect() as connection:
        return [row.payload for row in connection.execute(
            sa.select(outbox_table.c.payload, outbox_table.c.aggregate_key).where(outbox_table.c.event_type == event_type)
            .order_by(outbox_table.c.id)
        )]


def history(engine, txn_ref):
    with engine.connect() as connection:
        return connection.execute(
            sa.select(payment_history).where(payment_history.c.txn_ref == txn_ref).order_by(payment_history.c.id)
        ).all()


def one_of_each(engine):
    """Local payments and a settlement file with every outcome once (or twice)."""
    paid = DAY.replace(hour=9)
    add_payment(engine, "PMATCHED", status="succeeded", paid_at=paid, gateway_txn_no="900001", charge="paid")
    add_payment(engine, "PPENDING", status="pending", gateway_paid=True)
    add_payment(engine, "PEXPIRED", status="expired", amount=200_000, gateway_paid=True)
    add_payment(engine, "PAMOUNT", status="pending", amount=150_000)
    add_payment(engine, "PREFUNDED", status="succeeded", paid_at=paid, gateway_txn_no="900005", charge="paid")
    add_payment(engine, "PFAILEDGW", status="succeeded", paid_at=paid, gateway_txn_no="900006", charge="paid")
    add_payment(engine, "PFAILEDOK", status="failed")
    add_payment(engine, "PNOTINFILE", status="succeeded", paid_at=DAY.replace(hour=23, minute=30),
                gateway_txn_no="900008", charge="paid")
    # not this file's business: another day, another gateway, not succeeded
    add_payment(engine, "POTHERDAY", status="succeeded", paid_at=DAY - timedelta(days=1), charge="paid")
    add_payment(engine, "PMOMO", status="succeeded", paid_at=paid, gateway="momo", charge="paid")
    add_payment(engine, "PSTILLPENDING", status="pending")
    return settlement(
        "PMATCHED,900001,150000,success,2026-11-25T09:00:00+07:00",
        "PPENDING,900002,150000,success,2026-11-25T09:15:30+07:00",
        "PEXPIRED,900003,200000,success,2026-11-25T02:20:00Z",
        "PAMOUNT,900004,15000,success,2026-11-25T09:30:00+07:00",
        "PREFUNDED,900005,150000,refunded,2026-11-25T09:00:00+07:00",
        "PFAILEDGW,900006,150000,failed,2026-11-25T09:00:00+07:00",
        "PFAILEDOK,,150000,failed,",
        "PUNKNOWN,900009,99000,success,2026-11-25T11:00:00+07:00",
        "PBADAMOUNT,900010,12a00,success,2026-11-25T11:00:00+07:00",
        "PBADSTATUS,900011,150000,paid,2026-11-25T11:00:00+07:00",
        ",900012,150000,success,2026-11-25T11:00:00+07:00",
        "PBADDATE,900013,150000,success,25/11/2026 11:00",
        "PSHORT,900014,150000",
        "PMATCHED,900001,150000,success,2026-11-25T09:00:00+07:00",
    )


def test_a_file_with_every_outcome_gets_a_full_report(engine):
    report = reconcile_text(unit_of_work(engine), "vnpay", confirm=confirm(), settlement_csv=one_of_each(engine))

    assert report["gateway"] == "vnpay"
    assert report["rows"] == 14
    assert report["matched"] == 2  # PMATCHED, PFAILEDOK
    assert [(f["txn_ref"], f["old_status"], f["line"]) for f in report["fixed"]] == [
        ("PPENDING", "pending", 3), ("PEXPIRED", "expired", 4)]
    assert report["fixed"][0] == {
        "txn_ref": "PPENDING", "line": 3, "dossier_code": "D-PPENDING", "amount": 150_000,
        "gateway_txn_no": "900002", "paid_at": "2026-11-25T09:15:30+07:00", "old_status": "pending",
    }
    assert report["missing_locally"] == [{
        "txn_ref": "PUNKNOWN", "line": 9, "gateway_txn_no": "900009", "amount": 99_000, "status": "success",
        "paid_at": "2026-11-25T11:00:00+07:00",
    }]
    assert [f["txn_ref"] for f in report["missing_at_gateway"]] == ["PNOTINFILE"]
    assert report["missing_at_gateway"][0]["paid_at"] == "2026-11-25T23:30:00+07:00"
    assert report["amount_mismatch"] == [{
        "txn_ref": "PAMOUNT", "line": 5, "dossier_code": "D-PAMOUNT", "local_amount": 150_000,
        "gateway_amount": 15_000, "local_status": "pending", "gateway_status": "success", "gateway_txn_no": "900004",
    }]
    assert [(f["txn_ref"], f["local_status"], f["gateway_status"]) for f in report["status_mismatch"]] == [
        ("PREFUNDED", "succeeded", "refunded"), ("PFAILEDGW", "succeeded", "failed")]
    assert [f["line"] for f in report["malformed"]] == [10, 11, 12, 13, 14, 15]
    reasons = [f["reason"] for f in report["malformed"]]
    assert "bad amount" in reasons[0] and "unknown status" in reasons[1] and reasons[2] == "missing txn_ref"
    assert "bad paid_at" in reasons[3] and "expected 5 fields" in reasons[4]
    assert reasons[5] == "duplicate txn_ref, first listed on line 2"
    assert set(report["malformed"][0]) == {"line", "reason"}
    # an amount mismatch is never fixed
    assert payment(engine, "PAMOUNT").status == "pending"
    assert payment(engine, "PSTILLPENDING").status == "pending"


def test_a_fixed_payment_succeeds_with_the_gateway_figures_and_one_event(engine):
    reconcile_text(unit_of_work(engine), "vnpay", confirm=confirm(), settlement_csv=one_of_each(engine))

    fixed = payment(engine, "PPENDING")
    assert fixed.status == "succeeded"
    assert fixed.gateway_txn_no == "900002"
    assert fixed.paid_at == datetime(2026, 11, 25, 2, 15, 30, tzinfo=timezone.utc)
    [entry] = history(engine, "PPENDING")
    assert (entry.old_status, entry.new_status, entry.source) == ("pending", "succeeded", "reconciliation")
    assert entry.evidence["line"] == 3
    events = outbox_events(engine)
    assert [e["txn_ref"] for e in events] == ["PPENDING", "PEXPIRED"]
    event = events[0]
    assert set(event) == {"event_id", "occurred_at", "txn_ref", "dossier_code", "amount", "gateway",
                          "gateway_txn_no", "paid_at"}
    assert (event["dossier_code"], event["amount"], event["gateway"], event["gateway_txn_no"], event["paid_at"]) == (
        "D-PPENDING", 150_000, "vnpay", "900002", "2026-11-25T09:15:30+07:00")
    with engine.connect() as connection:
        key = connection.execute(sa.select(outbox_table.c.aggregate_key).order_by(outbox_table.c.id)).scalars().first()
        charge = connection.execute(sa.select(charges).where(charges.c.dossier_code == "D-PPENDING")).one()
    assert key == "D-PPENDING"
    assert (charge.status, charge.paid_txn_ref) == ("paid", "PPENDING")


def test_the_same_file_twice_fixes_nothing_the_second_time(engine):
    text = one_of_each(engine)
    first = reconcile_text(unit_of_work(engine), "vnpay", confirm=confirm(), settlement_csv=text)
    second = reconcile_text(unit_of_work(engine), "vnpay", confirm=confirm(), settlement_csv=text)

    assert len(first["fixed"]) == 2
    assert second["fixed"] == []
    assert second["matched"] == first["matched"] + 2
    assert len(outbox_events(engine)) == 2
    assert len(history(engine, "PPENDING")) == 1
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(reconciliation_runs)).scalar_one() == 2


def test_a_success_for_an_already_paid_dossier_is_fixed_then_queued_for_refund(engine):
    add_payment(engine, "PFIRST", status="succeeded", paid_at=DAY, dossier_code="D-1", charge="paid")
    add_payment(engine, "PSECOND", status="expired", dossier_code="D-1", gateway_paid=True)
    report = reconcile_text(unit_of_work(engine), "vnpay", confirm=confirm(), settlement_csv=settlement(
        "PFIRST,1,150000,success,2026-11-25T10:00:00+07:00",
        "PSECOND,2,150000,success,2026-11-25T10:05:00+07:00",
    ))

    assert [f["txn_ref"] for f in report["fixed"]] == ["PSECOND"]
    assert "already paid by PFIRST" in report["fixed"][0]["note"]
    assert payment(engine, "PSECOND").status == "refund_pending"
    assert [(h.old_status, h.new_status, h.source) for h in history(engine, "PSECOND")] == [
        ("expired", "succeeded", "reconciliation"), ("succeeded", "refund_pending", "refund")]
    assert [e["txn_ref"] for e in outbox_events(engine)] == ["PSECOND"]


def test_a_file_with_the_wrong_header_is_refused_and_nothing_is_stored(engine):
    add_payment(engine, "PPENDING", status="pending")
    with pytest.raises(ValidationError) as refused:
        reconcile_text(unit_of_work(engine), "vnpay", confirm=confirm(), settlement_csv="ref,amount\nPPENDING,150000\n")
    assert "settlement_csv" in refused.value.fields
    assert "txn_ref,gateway_txn_no,amount,status,paid_at" in refused.value.fields["settlement_csv"][0]
    with pytest.raises(ValidationError):
        reconcile_text(unit_of_work(engine), "vnpay", confirm=confirm(), settlement_csv="")
    with pytest.raises(ValidationError) as unknown:
        reconcile_text(unit_of_work(engine), "paypal", confirm=confirm(), settlement_csv=settlement())
    assert "gateway" in unknown.value.fields
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(reconciliation_runs)).scalar_one() == 0
    assert payment(engine, "PPENDING").status == "pending"


def test_a_file_of_only_malformed_rows_never_stops_the_run(engine):
    report = reconcile_text(unit_of_work(engine), "momo", confirm=confirm(), settlement_csv=settlement("A,B", "X,1,2,3,4,5", "N\x00,1,150000,success,", ""))
    assert report["rows"] == 3
    assert report["matched"] == 0
    assert [f["line"] for f in report["malformed"]] == [2, 3, 4]
    assert all(set(f) == {"line", "reason"} for f in report["malformed"])


def _cli(*args, database_url, **kwargs):
    env = {**os.environ, "PAYMENT_DATABASE_URL": database_url, **gateway_env()}
    return subprocess.Popen(
        [sys.executable, "-m", "payment.recon_cli", *args], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


def test_two_operators_running_the_same_file_at_once_fix_once(engine, recon_database, tmp_path):
    text = one_of_each(engine)
    path = tmp_path / "vnpay-2026-11-25.csv"
    path.write_text(text)
    runs = [_cli("--gateway", "vnpay", str(path), "--out", str(tmp_path / f"out{i}"), "--no-progress",
                 "--no-migrate", database_url=recon_database.url) for i in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs

    assert [e["txn_ref"] for e in outbox_events(engine)] == ["PPENDING", "PEXPIRED"]
    assert len(history(engine, "PPENDING")) == 1
    with engine.connect() as connection:
        fixed = connection.execute(
            sa.select(reconciliation_items.c.run_id, sa.func.count())
            .where(reconciliation_items.c.outcome == "fixed").group_by(reconciliation_items.c.run_id)
        ).all()
    assert [count for _, count in fixed] == [2]  # one run fixed both, the other none


def test_two_runs_in_threads_at_once_fix_once(engine):
    import threading

    text = one_of_each(engine)
    reports, errors = [], []

    def run():
        try:
            reports.append(reconcile_text(unit_of_work(engine), "vnpay", confirm=confirm(), settlement_csv=text))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(len(r["fixed"]) for r in reports) == [0, 2]
    assert len(outbox_events(engine)) == 2


def test_the_console_command_writes_csv_and_html_and_shows_a_stored_run(engine, recon_database, tmp_path):
    path = tmp_path / "vnpay.csv"
    path.write_text(one_of_each(engine))
    out = tmp_path / "reports"
    run = _cli("--gateway", "vnpay", str(path), "--out", str(out), database_url=recon_database.url)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert "Fixed (now succeeded)" in stdout and "Missing at gateway" in stdout
    [csv_report] = sorted(out.glob("*.csv"))
    [html_report] = sorted(out.glob("*.html"))
    csv_lines = csv_report.read_text().splitlines()
    assert csv_lines[0].startswith("outcome,line,txn_ref")
    assert len(csv_lines) == 1 + 2 + 1 + 1 + 1 + 2 + 6
    html = html_report.read_text()
    assert "<svg" in html and "PUNKNOWN" in html and "Amount mismatch" in html
    run_id = csv_report.stem.rsplit("-", 1)[1]

    again = _cli("--show", run_id, "--out", str(tmp_path / "again"), database_url=recon_database.url)
    stdout, stderr = again.communicate(timeout=60)
    assert again.returncode == 0, stderr
    assert f"run {run_id}" in stdout
    assert (tmp_path / "again" / csv_report.name).read_text() == csv_report.read_text()

    refused = tmp_path / "bad.csv"
    refused.write_text("a,b,c\n1,2,3\n")
    bad = _cli("--gateway", "vnpay", str(refused), "--no-progress", database_url=recon_database.url)
    _, stderr = bad.communicate(timeout=60)
    assert bad.returncode == 2 and "header" in stderr


def test_a_small_file_reconciles_on_sqlite_too(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'payment.db'}")
    upgrade_database(engine, "payment:migrations")
    try:
        text = one_of_each(engine)
        report = reconcile_text(unit_of_work(engine), "vnpay", confirm=confirm(), settlement_csv=text)
        assert report["matched"] == 2
        assert [f["txn_ref"] for f in report["fixed"]] == ["PPENDING", "PEXPIRED"]
        assert report["fixed"][0]["paid_at"] == "2026-11-25T09:15:30+07:00"
        assert [f["txn_ref"] for f in report["missing_locally"]] == ["PUNKNOWN"]
        assert [f["txn_ref"] for f in report["missing_at_gateway"]] == ["PNOTINFILE"]
        assert [f["txn_ref"] for f in report["amount_mismatch"]] == ["PAMOUNT"]
        assert [f["txn_ref"] for f in report["status_mismatch"]] == ["PREFUNDED", "PFAILEDGW"]
        assert len(report["malformed"]) == 6
        assert payment(engine, "PPENDING").paid_at == datetime(2026, 11, 25, 2, 15, 30, tzinfo=timezone.utc)
        second = reconcile_text(unit_of_work(engine), "vnpay", confirm=confirm(), settlement_csv=text)
        assert second["fixed"] == [] and second["matched"] == 4
        assert len(outbox_events(engine)) == 2

        path = tmp_path / "file.csv"
        path.write_text(text)
        run_id = reconcile_file(unit_of_work(engine), "vnpay", str(path), confirm=confirm())
        assert run_id == 3
    finally:
        engine.dispose()


class TestReadingTheSettlementFile:
    def test_rows_are_validated_one_by_one_with_their_line_numbers(self):
        rows = list(read_settlement([
            HEADER_LINE + "\n", "A1,77,150000,SUCCESS,2026-11-25 10:00:00\n", "\n", "A2,,150000,failed,\n",
            "A3,,-5,failed,\n",
        ]))
        assert [(r.line, r.txn_ref, r.status, r.reason) for r in rows] == [
            (2, "A1", "success", None), (4, "A2", "failed", None),
            (5, "A3", None, "bad amount '-5': expected a positive integer number of VND"),
        ]
        assert rows[0].paid_at == datetime(2026, 11, 25, 10, tzinfo=VN_TZ)  # no offset: Vietnam time

    def test_a_success_needs_a_paid_at(self):
        [row] = read_settlement([HEADER_LINE, "A1,77,150000,success,"])
        assert row.reason == "missing paid_at for a success row"

    def test_a_byte_order_mark_and_spaces_in_the_header_are_accepted(self):
        assert list(read_settlement(["\ufefftxn_ref, gateway_txn_no,amount,status,paid_at"])) == []
