"""An IPN and the timer's gateway query racing for the same pending payment.

Whichever comes first settles it; the other finds it settled. Exactly one
transition, one history entry and one ``payment_succeeded``, whatever the
interleaving (CONTRACT section 3.3).
"""
import random
import time

import eventlet
import pytest
import sqlalchemy as sa
from eventlet.event import Event

from payment.orm import payments
from portal_shared.schema import outbox_table
from tests.helpers import make_collector, wait_for
from tests.payment.conftest import make_payment_config, vnpay_ipn
from tests.payment.test_vnpay import start


@pytest.fixture
def fast_config(rabbit_config, payment_database, fake_vnpay, fake_momo):
    payment_database.truncate()
    return make_payment_config(rabbit_config, payment_database, fake_vnpay, fake_momo,
                               PAYMENT_PENDING_CHECK_SECONDS=0.05)


@pytest.fixture
def succeeded_collector(container_factory, rabbit_config):
    collector = make_collector("payment", "payment_succeeded", name="race_succeeded_collector")
    container_factory(collector, rabbit_config).start()
    return collector


def succeeded_events(engine, txn_ref):
    with engine.connect() as connection:
        payloads = connection.execute(
            sa.select(outbox_table.c.payload).where(outbox_table.c.event_type == "payment_succeeded")).scalars()
        return [payload for payload in payloads if payload["txn_ref"] == txn_ref]


def transitions(payment_db, txn_ref):
    return [(h["old_status"], h["new_status"]) for h in payment_db.history(txn_ref)]


def querydr_hook(fake, hook):
    """Run ``hook(body)`` before the fake VNPay answers a querydr (it may sleep or wait)."""
    original = fake.app

    def app(request):
        body = request.get_json(silent=True) or {}
        if request.method == "POST" and body.get("vnp_Command") == "querydr":
            hook(body)
        return original(request)

    fake.app = app


def waiting_on_locks(engine):
    with engine.connect() as connection:
        return connection.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )).scalar_one()


def test_ipn_arriving_while_the_query_hangs_is_answered_at_once_and_the_late_answer_changes_nothing(
        start_payment_service, fast_config, announce, fake_vnpay, payment_db, payment_database,
        succeeded_collector):
    start_payment_service(fast_config)
    announce("DOSSIER-RACE-Q1", fee_amount=200000)
    payment = start(fast_config, "DOSSIER-RACE-Q1")
    txn_ref = payment["txn_ref"]
    fake_vnpay.visit(payment["pay_url"])  # known to querydr from now on, still unpaid: the timer leaves it pending

    in_flight, release = Event(), Event()

    def hold_the_paid_query(body):
        if body.get("vnp_TxnRef") == txn_ref and fake_vnpay.orders[txn_ref]["paid"] and not in_flight.ready():
            in_flight.send()
            release.wait()

    querydr_hook(fake_vnpay, hold_the_paid_query)
    params = fake_vnpay.pay(txn_ref)
    with eventlet.Timeout(10):
        in_flight.wait()  # the timer's worker waits for VNPay's answer: no transaction, no row lock
    started = time.monotonic()
    answer = vnpay_ipn(fast_config, params)
    assert time.monotonic() - started < 1.0
    assert answer == {"RspCode": "00", "Message": "Confirm Success"}
    assert waiting_on_locks(payment_database.engine) == 0
    release.send()  # the query's answer (paid) arrives after the IPN settled it: applied to nothing
    eventlet.sleep(1.0)

    assert transitions(payment_db, txn_ref) == [(None, "pending"), ("pending", "succeeded")]
    assert payment_db.history(txn_ref)[-1]["source"] == "ipn"
    assert len(succeeded_events(payment_database.engine, txn_ref)) == 1
    wait_for(lambda: succeeded_collector.received, message="payment_succeeded")
    eventlet.sleep(0.5)
    assert [event["txn_ref"] for event in succeeded_collector.received] == [txn_ref]


def test_row_locked_elsewhere_the_timer_never_waits_the_ipn_does_and_one_of_them_settles_it(
        start_payment_service, fast_config, announce, fake_vnpay, payment_db, payment_database):
    start_payment_service(fast_config)
    announce("DOSSIER-RACE-Q2", fee_amount=200000)
    payment = start(fast_config, "DOSSIER-RACE-Q2")
    txn_ref = payment["txn_ref"]
    fake_vnpay.visit(payment["pay_url"])
    queried = []
    querydr_hook(fake_vnpay, lambda body: queried.append(body["vnp_TxnRef"]))
    wait_for(lambda: txn_ref in queried, message="the timer querying the pending payment")

    with payment_database.engine.connect() as holder:
        transaction = holder.begin()
        holder.execute(sa.select(payments.c.id).where(payments.c.txn_ref == txn_ref).with_for_update())
        params = fake_vnpay.pay(txn_ref)
        ipn = eventlet.spawn(vnpay_ipn, fast_config, params)
        wait_for(lambda: waiting_on_locks(payment_database.engine) >= 1, message="the IPN waiting on the row lock")
        queried.clear()
        eventlet.sleep(0.5)  # timer ticks: each may query, none queues behind the lock to apply its answer
        assert waiting_on_locks(payment_database.engine) == 1 and not ipn.dead  # the IPN alone waits
        transaction.commit()  # both go for it now
    with eventlet.Timeout(10):
        answer = ipn.wait()
    eventlet.sleep(0.3)

    assert answer["RspCode"] in ("00", "02")
    assert transitions(payment_db, txn_ref) == [(None, "pending"), ("pending", "succeeded")]
    assert payment_db.history(txn_ref)[-1]["source"] == ("ipn" if answer["RspCode"] == "00" else "query")
    assert len(succeeded_events(payment_database.engine, txn_ref)) == 1


def test_many_ipns_and_two_processes_timers_racing(start_payment_service, fast_config, rabbit_config,
                                                   payment_database, fake_vnpay, fake_momo, announce, payment_db):
    other_config = make_payment_config(rabbit_config, payment_database, fake_vnpay, fake_momo,
                                       PAYMENT_PENDING_CHECK_SECONDS=0.02)
    start_payment_service(fast_config)
    start_payment_service(other_config)
    rng = random.Random(7)
    querydr_hook(fake_vnpay, lambda body: eventlet.sleep(rng.uniform(0, 0.03)))  # shuffle the interleavings

    payments_made = []
    for number in range(10):
        code = f"DOSSIER-RACE-M{number}"
        announce(code, fee_amount=100000 + number)
        payment = start(fast_config, code)
        fake_vnpay.visit(payment["pay_url"])
        payments_made.append(payment)

    sources, answers = [], []
    for payment in payments_made:
        eventlet.sleep(rng.uniform(0, 0.05))  # let the timers be anywhere in their cycle
        params = fake_vnpay.pay(payment["txn_ref"])
        pool = eventlet.GreenPool(6)
        codes = list(pool.imap(lambda config: vnpay_ipn(config, params)["RspCode"],
                               [fast_config, other_config] * 3))
        answers.append(codes)
        wait_for(lambda: payment_db.payment(payment["txn_ref"])["status"] == "succeeded", message="settled")
    eventlet.sleep(0.5)  # more ticks of both timers over settled payments

    for payment, codes in zip(payments_made, answers):
        txn_ref = payment["txn_ref"]
        assert transitions(payment_db, txn_ref) == [(None, "pending"), ("pending", "succeeded")], txn_ref
        source = payment_db.history(txn_ref)[-1]["source"]
        sources.append(source)
        # one IPN confirmed it, unless the query got there first; every other IPN was told 02
        assert sorted(codes) == (["00"] + ["02"] * 5 if source == "ipn" else ["02"] * 6), (txn_ref, codes, source)
        assert len(succeeded_events(payment_database.engine, txn_ref)) == 1, txn_ref
        assert payment_db.charge(payment["dossier_code"])["paid_txn_ref"] == txn_ref
    assert set(sources) <= {"ipn", "query"}
