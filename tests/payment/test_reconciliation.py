"""Reconciliation of settlement files, each case on the real PostgreSQL and on a SQLite file (``make run``)."""
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from payment.gateways import PaymentSettings
from sandbox.fakes import FakeVnpay
from payment.orm import charges, payment_history, payments
from payment.reconciliation import reconcile_file, reconcile_text
from payment.reconciliation.confirm import gateway_confirmer
from payment.reconciliation import settlement as settlement_rules
from payment.reconciliation.settlement import CLEAN_LINE, HEADER, numbered_chunks, parse_line, read_settlement
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


class Database(NamedTuple):
    engine: sa.engine.Engine
    url: str


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request, tmp_path):
    """An empty payment database: the real PostgreSQL, or a SQLite file as ``make run`` uses."""
    if request.param == "postgresql":
        recon_database = request.getfixturevalue("recon_database")
        recon_database.truncate()
        yield Database(recon_database.engine, recon_database.url)
        return
    url = f"sqlite:///{tmp_path / 'payment.db'}"
    engine = create_db_engine(url)
    upgrade_database(engine, "payment:migrations")
    yield Database(engine, url)
    engine.dispose()


@pytest.fixture
def engine(database):
    return database.engine


@pytest.fixture
def postgres_engine(recon_database):
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


def tricky_file(engine):
    """Local payments and a file of lines in every shape a settlement file may take, and line endings of all kinds."""
    paid = DAY.replace(hour=9)
    add_payment(engine, "PQUOTED", status="succeeded", paid_at=paid, charge="paid")
    add_payment(engine, "PSPACED", status="pending", gateway_paid=True)
    add_payment(engine, "PFRACTION", status="succeeded", paid_at=paid, charge="paid")
    add_payment(engine, "POCT31", status="refunded", paid_at=datetime(2026, 10, 31, 3, tzinfo=timezone.utc), charge=None)
    add_payment(engine, "PLEAD", status="succeeded", paid_at=paid, charge="paid")
    add_payment(engine, "PMOMO2", status="succeeded", paid_at=paid, gateway="momo", charge="paid")
    add_payment(engine, "PNOTINFILE2", status="succeeded", paid_at=datetime(2026, 10, 31, 15, tzinfo=VN_TZ),
                charge="paid")
    return "".join([
        HEADER_LINE + "\r\n",
        '"PQUOTED","900020","150000","success","2026-11-25T10:00:00+07:00"\r\n',  # 2
        " PSPACED , 900021 , 150000 , SUCCESS , 2026-11-25 10:30:00 \r\n",  # 3: no offset is Vietnam time
        "PFRACTION,900022,150000,success,2026-11-25T03:00:00.5Z\r",  # 4
        "   \r\n",  # 5: blank
        "POCT31,900023,150000,refunded,2026-10-31T10:00:00+07:00\n",  # 6: a 31st
        "PFEB30,900024,150000,success,2026-02-30T10:00:00+07:00\n",  # 7
        "PN\x00UL,1,150000,success,2026-11-25T10:00:00+07:00\n",  # 8
        "PFEW,900025,150000\n",  # 9
        "PZERO,1,0,success,2026-11-25T10:00:00+07:00\n",  # 10
        "PLEAD,900026,0150000,success,2026-11-25T10:00:00+07:00\n",  # 11
        "PMOMO2,900027,150000,success,2026-11-25T10:00:00+07:00",  # 12, no final line ending
    ])


@pytest.mark.parametrize("chunk", ["1 MiB", "5 characters"])
def test_lines_of_every_shape_are_read_alike_on_both_databases(engine, chunk, monkeypatch):
    if chunk != "1 MiB":  # chunk boundaries everywhere, inside "\r\n" too
        monkeypatch.setattr(settlement_rules, "READ_CHUNK", 5)
    report = reconcile_text(unit_of_work(engine), "vnpay", confirm=confirm(), settlement_csv=tricky_file(engine))

    assert (report["rows"], report["matched"]) == (10, 4)  # PQUOTED, PFRACTION, POCT31, PLEAD
    assert report["fixed"] == [{
        "txn_ref": "PSPACED", "line": 3, "dossier_code": "D-PSPACED", "amount": 150_000, "gateway_txn_no": "900021",
        "paid_at": "2026-11-25T10:30:00+07:00", "old_status": "pending",
    }]
    assert report["malformed"] == [
        {"line": 7, "reason": "bad paid_at '2026-02-30T10:00:00+07:00': expected ISO 8601"},
        {"line": 8, "reason": "invalid txn_ref 'PN\ufffdUL'"},
        {"line": 9, "reason": "expected 5 fields, found 3"},
        {"line": 10, "reason": "bad amount '0': expected a positive integer number of VND"},
    ]
    assert report["missing_locally"] == [{
        "txn_ref": "PMOMO2", "line": 12, "gateway_txn_no": "900027", "amount": 150_000, "status": "success",
        "paid_at": "2026-11-25T10:00:00+07:00", "reason": "the local payment is on gateway momo",
    }]
    # the file's dates are 2026-11-25 and 2026-10-31 (Vietnam time)
    assert [(f["txn_ref"], f["paid_at"]) for f in report["missing_at_gateway"]] == [
        ("PNOTINFILE2", "2026-10-31T15:00:00+07:00")]
    assert report["amount_mismatch"] == report["status_mismatch"] == report["unconfirmed"] == []
    assert payment(engine, "PSPACED").paid_at == datetime(2026, 11, 25, 3, 30, tzinfo=timezone.utc)


def test_an_unconfirmed_line_changes_nothing_and_is_reported_with_its_status(engine):
    add_payment(engine, "PNOTPAID", status="pending")  # VNPay does not know it paid
    report = reconcile_text(unit_of_work(engine), "vnpay", confirm=confirm(), settlement_csv=settlement(
        "PNOTPAID,900030,150000,success,2026-11-25T10:00:00+07:00"))

    assert report["fixed"] == []
    [unconfirmed] = report["unconfirmed"]
    assert (unconfirmed["txn_ref"], unconfirmed["line"], unconfirmed["amount"]) == ("PNOTPAID", 2, 150_000)
    assert unconfirmed["reason"]
    assert [(f["txn_ref"], f["local_status"]) for f in report["status_mismatch"]] == [("PNOTPAID", "pending")]
    assert payment(engine, "PNOTPAID").status == "pending"
    assert history(engine, "PNOTPAID") == [] and outbox_events(engine) == []


def test_a_payment_settled_before_the_run_is_matched_not_fixed(engine):
    add_payment(engine, "PIPN", status="succeeded", paid_at=DAY, gateway_txn_no="900031", charge="paid",
                gateway_paid=True)
    report = reconcile_text(unit_of_work(engine), "vnpay", confirm=confirm(), settlement_csv=settlement(
        "PIPN,900031,150000,success,2026-11-25T10:00:00+07:00"))
    assert (report["matched"], report["fixed"], report["status_mismatch"]) == (1, [], [])


def _cli(*args, database_url, **kwargs):
    env = {**os.environ, "PAYMENT_DATABASE_URL": database_url, **gateway_env()}
    return subprocess.Popen(
        [sys.executable, "-m", "payment.recon_cli", *args], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


def test_two_operators_running_the_same_file_at_once_fix_once(engine, database, tmp_path):
    text = one_of_each(engine)
    path = tmp_path / "vnpay-2026-11-25.csv"
    path.write_text(text)
    runs = [_cli("--gateway", "vnpay", str(path), "--out", str(tmp_path / f"out{i}"), "--no-progress",
                 "--no-migrate", database_url=database.url) for i in range(2)]
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


def test_two_runs_in_threads_at_once_fix_once(postgres_engine):
    # PostgreSQL only: this process's threads are eventlet's green threads, and SQLite's busy wait for its
    # write lock blocks them all (the two processes above take turns on SQLite as on PostgreSQL)
    import threading

    engine = postgres_engine

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


def test_the_console_command_writes_csv_and_html_and_shows_a_stored_run(engine, database, tmp_path):
    path = tmp_path / "vnpay.csv"
    path.write_text(one_of_each(engine))
    out = tmp_path / "reports"
    run = _cli("--gateway", "vnpay", str(path), "--out", str(out), database_url=database.url)
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

    again = _cli("--show", run_id, "--out", str(tmp_path / "again"), database_url=database.url)
    stdout, stderr = again.communicate(timeout=60)
    assert again.returncode == 0, stderr
    assert f"run {run_id}" in stdout
    assert (tmp_path / "again" / csv_report.name).read_text() == csv_report.read_text()

    refused = tmp_path / "bad.csv"
    refused.write_text("a,b,c\n1,2,3\n")
    bad = _cli("--gateway", "vnpay", str(refused), "--no-progress", database_url=database.url)
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

    def test_a_line_the_shortcut_takes_as_clean_is_valid_and_reads_as_the_copy_would(self):
        clean = [
            "A1,77,150000,success,2026-11-25T10:00:00+07:00",
            "a.b:c/d-e_f,,1,refunded,1000-01-01T00:00:00Z",
            "A2,,999999999999999999,failed,",
            "A3,7,5,failed,2026-12-28T23:59:59.123456-23:59",
            "X" * 64 + "," + "9" * 64 + ",42,success,2026-02-28T10:00:00.5+00:00",
        ]
        for line in clean:
            assert CLEAN_LINE.fullmatch(line), line
            row = parse_line(2, line)
            ref, gtn, amount, status, paid = line.split(",")
            assert row.reason is None, line
            assert (row.txn_ref, row.gateway_txn_no, row.amount, row.status) == (ref, gtn or None, int(amount), status)
            assert row.paid_at == (datetime.fromisoformat(paid.replace("Z", "+00:00")) if paid else None)

    def test_the_shortcut_leaves_every_other_line_to_the_rules(self):
        for line in [
            "A1,77,150000,success,2026-11-25 10:00:00",  # no offset: Vietnam time, the rules say
            "A1,77,150000,SUCCESS,2026-11-25T10:00:00Z",
            "A1,77,150000,success,2026-11-29T10:00:00Z",  # past the 28th: the month's length matters
            "A1,77,0150000,success,2026-11-25T10:00:00Z",
            "A1,77,0,success,2026-11-25T10:00:00Z",
            "A1,77,150000,success,",
            "A1,77,150000,refunded,",
            "X" * 65 + ",77,150000,success,2026-11-25T10:00:00Z",
            "A1,77,1234567890123456789,success,2026-11-25T10:00:00Z",
            '"A1",77,150000,success,2026-11-25T10:00:00Z',
            " A1,77,150000,success,2026-11-25T10:00:00Z",
        ]:
            assert not CLEAN_LINE.fullmatch(line), line

    def test_chunks_number_the_lines_whatever_their_endings(self, monkeypatch):
        import io

        text = "a\r\nb\rc\n\nd\r\ne\r"
        monkeypatch.setattr(settlement_rules, "READ_CHUNK", 3)
        small = [(number, line) for number, chunk in numbered_chunks(io.StringIO(text, newline="").read)
                 for number, line in enumerate(chunk.split("\n"), number)]
        monkeypatch.setattr(settlement_rules, "READ_CHUNK", 1 << 20)
        whole = [(number, line) for number, chunk in numbered_chunks(io.StringIO(text, newline="").read)
                 for number, line in enumerate(chunk.split("\n"), number)]
        assert small == whole == [(2, "a"), (3, "b"), (4, "c"), (5, ""), (6, "d"), (7, "e")]
