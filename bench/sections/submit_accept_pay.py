"""Submit + accept + start_payment of paid dossiers, 24 concurrent clients, each with its own RPC proxy.

A client takes one dossier through the three calls a citizen and an officer make: ``submit_dossier``
(``LLTP-01``, fee 200,000 VND), ``act_on_dossier(accept)`` (→ ``payment_requested``) and
``start_payment`` at VNPay. The payment service learns the charge from the dossier's event; until it has,
``start_payment`` answers ``NoPaymentDue`` and the client asks again 10 ms later (the retries are
counted). The figures: dossiers per second through all three calls, and per dossier the time from the
``accept`` call returning to the charge row being written by the payment service (its ``created_at``;
both clocks are this machine's).

The pending payments are left on the stack for the ``ipn`` and ``dossier_drain`` sections, with the CPU
time of each process at the start: those two sections finish the paid dossiers' story.
"""
import os
import time

import eventlet
import sqlalchemy as sa

from bench.sections.notify_latency import _pool_run, applicant, cpu_seconds, percentile, vhost_message_stats, wait_idle

NAME = "submit_accept_pay"
PROCEDURE = "LLTP-01"  # 200,000 VND: accept → payment_requested → a charge at payment
CLIENTS = 24
RETURN_URL = "http://127.0.0.1:9/cong-dvc/thanh-toan/ket-qua"
RETRY_SECONDS = 0.01
FIRST_APPLICANT = 500_000  # other sections' applicants are numbered from 0
IDLE_SECONDS = 5.0


def paid_dossiers(args):
    return int(os.environ.get("BENCH_PAID_DOSSIERS") or args.paid_dossiers)


def ms(value):
    return None if value is None else round(value * 1000, 1)


def start_payment(rpc, code):
    """``start_payment`` until the payment service knows the charge: (payment, retries)."""
    retries = 0
    while True:
        try:
            return rpc.payment.start_payment(code, "vnpay", RETURN_URL, "203.0.113.7"), retries
        except Exception as exc:
            if not (type(exc).__name__ == "RemoteError" and "NoPaymentDue" in str(exc)) or retries > 3000:
                raise
        retries += 1
        eventlet.sleep(RETRY_SECONDS)


def charges_created(engine, codes):
    """``{dossier_code: created_at as a Unix time}`` of the payment service's charge rows."""
    with engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT dossier_code, created_at FROM charges WHERE dossier_code = ANY(:codes)"), {"codes": codes})
        return {code: created.timestamp() for code, created in rows}


def run(stack, args):
    count = paid_dossiers(args)
    wait_idle(stack)  # the sections before have left nothing queued
    # what each process burns doing nothing (timers, sweeps, heartbeats), so that dossier_drain can
    # tell the paid dossiers' CPU from the idle ticking over the same minutes
    idle_from, idle_started = cpu_seconds(stack), time.time()
    time.sleep(IDLE_SECONDS)
    stack.paid_cpu_before, stack.paid_started = cpu_seconds(stack), time.time()
    stack.paid_messages_before = vhost_message_stats(stack)
    stack.idle_cpu_per_second = {label: (stack.paid_cpu_before[label] - idle_from[label]) / (time.time() - idle_started)
                                 for label in idle_from
                                 if idle_from[label] is not None and stack.paid_cpu_before.get(label) is not None}

    def one(rpc, i):
        code = rpc.dossier.submit_dossier(PROCEDURE, applicant(FIRST_APPLICANT + i))["code"]
        rpc.dossier.act_on_dossier(code, "accept", "bench")
        accepted = time.time()
        payment, retries = start_payment(rpc, code)
        return {"code": code, "accepted": accepted, "paid_from": time.time(), "retries": retries,
                "txn_ref": payment["txn_ref"], "amount": payment["amount"]}

    started = time.time()
    results, errors = _pool_run(stack.amqp_uri, count, one, clients=CLIENTS)
    seconds = time.time() - started
    done = [result for result in results if result]
    created = charges_created(stack.databases["payment"].engine, [result["code"] for result in done])
    known = [created[result["code"]] - result["accepted"] for result in done if result["code"] in created]
    start_calls = [result["paid_from"] - result["accepted"] for result in done]
    stack.paid = done  # for ``ipn`` and ``dossier_drain``

    ceilings = getattr(stack, "ceilings", {})
    figures = {
        "dossiers": count,
        "clients": CLIENTS,
        "completed": len(done),
        "errors": {"count": len(errors), "first": errors[:3]},
        "seconds": round(seconds, 2),
        "dossiers_per_second": round(len(done) / seconds, 1),
        # accept returned → the payment service wrote the charge
        "charge_known_after_accept_ms": {"p50": ms(percentile(known, 0.5)), "p99": ms(percentile(known, 0.99)),
                                         "max": ms(max(known) if known else None)},
        # accept returned → start_payment returned a pending payment (NoPaymentDue retries included)
        "start_payment_after_accept_ms": {"p50": ms(percentile(start_calls, 0.5)),
                                          "p99": ms(percentile(start_calls, 0.99))},
        "start_payment_no_payment_due_retries": sum(result["retries"] for result in done),
        "dossiers_with_retries": sum(1 for result in done if result["retries"]),
    }
    if ceilings.get("rpc"):
        # three client calls per dossier, each a Nameko RPC like the ceiling's echo
        figures["client_rpc_calls_per_second_vs_rpc_ceiling"] = round(3 * figures["dossiers_per_second"]
                                                                      / ceilings["rpc"], 3)
    known_ms = figures["charge_known_after_accept_ms"]
    figures["table"] = [
        (f"dossiers/s, {CLIENTS} clients (submit + accept + start_payment)", figures["dossiers_per_second"],
         "≥ 100"),
        ("accept returned → charge known to payment, p50 / p99", f"{known_ms['p50']} / {known_ms['p99']} ms",
         "p99 ≤ 100 ms"),
        ("start_payment NoPaymentDue retries (dossiers retried)",
         f"{figures['start_payment_no_payment_due_retries']} ({figures['dossiers_with_retries']})", "0"),
        ("errors", len(errors), "0"),
    ]
    return figures
