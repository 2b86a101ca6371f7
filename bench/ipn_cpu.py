"""CPU time of the IPN hot path itself, one IPN after another: a figure the machine's load barely moves.

    .venv/bin/python bench/ipn_cpu.py [--ipns 500]

On a fresh payment database: ``--ipns`` due charges with a pending VNPay payment each (written
directly, not measured), then one signed success IPN per payment through the payment service's own
bus, unit of work and repositories (``AcceptVnpayIpn``: signature, locking read, settle, history,
charge, outbox), each answered ``00``. Prints the process CPU time (user + system, ``time.process_time``)
per IPN, the statements per IPN (``before_cursor_execute``) and the CPU per log line of the IPN's
``vnpay_ipn`` line plus its access-log line through the services' logging set-up (JSON, masking).
Everything runs in this one process, so the wall time of the database round trips is not counted;
the CPU the database spends is not either. Run it on two checkouts to compare code (``PYTHONPATH``).
"""
import argparse
import io
import json
import logging
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
import structlog  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from bench.sections.ipn import ipn_params, signed_ipn  # noqa: E402
from payment.commands import AcceptVnpayIpn  # noqa: E402
from payment.gateways import PaymentSettings  # noqa: E402
from payment.messagebus import MessageBus  # noqa: E402
from payment.orm import charges, payment_history, payments  # noqa: E402
from payment.unit_of_work import SqlUnitOfWork  # noqa: E402
from portal_shared.db import RetryingSession, UnitOfWork  # noqa: E402
from portal_shared.logs import configure_logging  # noqa: E402
from portal_shared.testing.plugin import FreshDatabase  # noqa: E402
from portal_shared.timeutil import utcnow  # noqa: E402

TMN_CODE, SECRET = "BENCHTMN", "BENCHVNPAYSECRET0123456789ABCDEF"
AMOUNT = 200_000


def seed(engine, count):
    now = utcnow()
    paid = []
    with engine.begin() as connection:
        for i in range(count):
            code, txn_ref = f"STP-HN-261204-C{i:05d}", f"P261204T1{i:05d}BENCHCPU"
            connection.execute(charges.insert().values(
                dossier_code=code, amount=AMOUNT, status="due", procedure_name="Cấp Phiếu lý lịch tư pháp",
                agency_code="STP-HN", source_event_id=f"ev-{i}", created_at=now, updated_at=now))
            payment_id = connection.execute(payments.insert().values(
                txn_ref=txn_ref, dossier_code=code, amount=AMOUNT, gateway="vnpay", status="pending",
                pay_url="https://sandbox.example/pay", created_at=now, expires_at=now + timedelta(minutes=15),
                updated_at=now, client_ip="203.0.113.7", refund_attempts=0).returning(payments.c.id)).scalar_one()
            connection.execute(payment_history.insert().values(
                payment_id=payment_id, txn_ref=txn_ref, old_status=None, new_status="pending", source="create",
                at=now, evidence={"client_ip": "203.0.113.7"}))
            paid.append({"code": code, "txn_ref": txn_ref, "amount": AMOUNT})
    return paid


def ipn_cpu(engine, paid):
    settings = PaymentSettings({"VNPAY_TMN_CODE": TMN_CODE, "VNPAY_HASH_SECRET": SECRET})
    database = UnitOfWork(sessionmaker(bind=engine, expire_on_commit=False, class_=RetryingSession), relay=None)
    params = [ipn_params(one, i, TMN_CODE, SECRET) for i, one in enumerate(paid)]
    statements = [0]
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.__setitem__(0, statements[0] + 1))
    # the first tenth warms the statement cache and the pool; the rest is measured
    warm = len(params) // 10
    codes = []
    for one in params[:warm]:
        codes.append(MessageBus(SqlUnitOfWork(database), settings, []).handle(AcceptVnpayIpn(one)).code)
    statements[0] = 0
    started = time.process_time()
    for one in params[warm:]:
        codes.append(MessageBus(SqlUnitOfWork(database), settings, []).handle(AcceptVnpayIpn(one)).code)
    cpu = time.process_time() - started
    database.close()
    measured = len(params) - warm
    return {"ipns": measured, "answered_00": codes.count("00"), "cpu_ms_per_ipn": round(cpu * 1000 / measured, 3),
            "statements_per_ipn": round(statements[0] / measured, 2)}


def log_cpu(lines=5000):
    """CPU per IPN of its two log lines: the service's ``vnpay_ipn`` and the web server's access line."""
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream, force=True)
    structlog.contextvars.bind_contextvars(service="payment", call_id="payment.vnpay_ipn.3f1c2b9a-0d4e",
                                           entrypoint="vnpay_ipn")
    service, access = structlog.get_logger("payment"), logging.getLogger("nameko.web.server")
    query = signed_ipn({"code": "STP-HN-261204-QM5BXR", "txn_ref": "P261204T233519RAWZCPY5TT", "amount": AMOUNT},
                       87, TMN_CODE, SECRET)
    started = time.process_time()
    for _ in range(lines):
        service.info("vnpay_ipn", txn_ref="P261204T233519RAWZCPY5TT", rsp_code="00", vnp_response_code="00")
        access.info('127.0.0.1 - - [04/Dec/2026 16:35:26] "GET /callbacks/vnpay/ipn?%s HTTP/1.1" 200 155 0.012',
                    query)
    cpu = time.process_time() - started
    structlog.contextvars.clear_contextvars()
    return {"cpu_ms_per_ipn_log_lines": round(cpu * 1000 / lines, 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipns", type=int, default=500)
    args = parser.parse_args()
    database = FreshDatabase("payment")
    try:
        result = ipn_cpu(database.engine, seed(database.engine, args.ipns))
    finally:
        database.drop()
    result.update(log_cpu())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
