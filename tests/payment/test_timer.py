"""Settling without an IPN: gateway queries, expiry, refunds and their retries."""
from datetime import datetime, timedelta, timezone

import eventlet
import pytest

from tests.helpers import make_collector, rpc_proxy, wait_for
from tests.payment.conftest import make_payment_config, vnpay_ipn, momo_ipn
from tests.payment.test_vnpay import outbox_events, start


@pytest.fixture
def fast_config(rabbit_config, payment_database, fake_vnpay, fake_momo):
    payment_database.truncate()
    return make_payment_config(rabbit_config, payment_database, fake_vnpay, fake_momo,
                               PAYMENT_PENDING_CHECK_SECONDS=0.2)


@pytest.fixture
def fast_container(start_payment_service, fast_config):
    return start_payment_service(fast_config)


@pytest.fixture
def fast_announce(fast_container, announce):
    return announce


def status_of(payment_db, txn_ref):
    return payment_db.payment(txn_ref)["status"]


def test_query_settles_a_payment_without_ipn(fast_container, fast_config, fast_announce, fake_vnpay, fake_momo,
                                             payment_db, payment_database):
    fast_announce("DOSSIER-Q-1", fee_amount=200000)
    fast_announce("DOSSIER-Q-2", fee_amount=200000)
    fast_announce("DOSSIER-Q-3", fee_amount=90000)
    paid = start(fast_config, "DOSSIER-Q-1")
    never_opened = start(fast_config, "DOSSIER-Q-2")
    by_momo = start(fast_config, "DOSSIER-Q-3", gateway="momo")
    fake_vnpay.visit(paid["pay_url"])
    params = fake_vnpay.pay(paid["txn_ref"])  # the IPN is lost
    fake_momo.pay(by_momo["txn_ref"])

    wait_for(lambda: status_of(payment_db, paid["txn_ref"]) == "succeeded", message="vnpay query")
    wait_for(lambda: status_of(payment_db, by_momo["txn_ref"]) == "succeeded", message="momo query")
    row = payment_db.payment(paid["txn_ref"])
    assert row["gateway_txn_no"] == params["vnp_TransactionNo"]
    assert payment_db.history(paid["txn_ref"])[-1]["source"] == "query"
    wait_for(lambda: len([b for b in fake_vnpay.api_requests if b["vnp_TxnRef"] == never_opened["txn_ref"]]) >= 2,
             message="repeated querydr")
    assert status_of(payment_db, never_opened["txn_ref"]) == "pending"  # querydr 91 leaves it pending
    assert len({b["vnp_RequestId"] for b in fake_vnpay.api_requests}) == len(fake_vnpay.api_requests)
    assert vnpay_ipn(fast_config, params)["RspCode"] == "02"  # the late IPN finds it confirmed
    eventlet.sleep(0.5)
    assert len(outbox_events(payment_database.engine, "payment_succeeded")) == 2


def test_unpaid_payment_expires_and_a_late_success_is_still_recorded(
        start_payment_service, rabbit_config, payment_database, fake_vnpay, fake_momo, announce, payment_db):
    payment_database.truncate()
    config = make_payment_config(rabbit_config, payment_database, fake_vnpay, fake_momo,
                                 PAYMENT_PENDING_CHECK_SECONDS=0.2, PAYMENT_EXPIRY_MINUTES=0.01)
    start_payment_service(config)
    announce("DOSSIER-EXP-1", fee_amount=200000)
    payment = start(config, "DOSSIER-EXP-1")
    wait_for(lambda: status_of(payment_db, payment["txn_ref"]) == "expired", message="expiry")
    assert [h["source"] for h in payment_db.history(payment["txn_ref"])] == ["create", "expiry"]
    fake_vnpay.visit(payment["pay_url"])
    params = fake_vnpay.pay(payment["txn_ref"])
    assert vnpay_ipn(config, params)["RspCode"] == "00"
    assert status_of(payment_db, payment["txn_ref"]) == "succeeded"


def test_withdrawn_dossier_gets_its_fee_refunded(payment_container, payment_config, announce, fake_vnpay, payment_db,
                                                 container_factory, rabbit_config):
    # the slow timer: the IPN, not a query, must be what settles the payment here
    collector = make_collector("payment", "payment_refunded", name="refund_collector")
    container_factory(collector, rabbit_config).start()
    announce("DOSSIER-W-1", fee_amount=200000)
    payment = start(payment_config, "DOSSIER-W-1")
    fake_vnpay.visit(payment["pay_url"])
    assert vnpay_ipn(payment_config, fake_vnpay.pay(payment["txn_ref"]))["RspCode"] == "00"
    announce("DOSSIER-W-1", new_status="withdrawn")
    wait_for(lambda: status_of(payment_db, payment["txn_ref"]) == "refunded", message="refund")
    assert [(h["new_status"], h["source"]) for h in payment_db.history(payment["txn_ref"])] == [
        ("pending", "create"), ("succeeded", "ipn"), ("refund_pending", "refund"), ("refunded", "refund")]
    assert len(fake_vnpay.refunds) == 1
    refund = fake_vnpay.refunds[0]
    assert refund["vnp_TransactionType"] == "02" and refund["vnp_Amount"] == 20000000
    event = wait_for(lambda: collector.received, message="payment_refunded")[0]
    assert (event["txn_ref"], event["amount"], event["dossier_code"]) == (payment["txn_ref"], 200000, "DOSSIER-W-1")
    assert payment_db.charge("DOSSIER-W-1")["status"] == "cancelled"


def test_refused_refund_stays_pending_with_its_reason_and_is_retried(fast_container, fast_config, fast_announce,
                                                                    fake_momo, payment_db):
    fake_momo.refuse_refunds = "Số dư tài khoản không đủ để hoàn tiền"
    fast_announce("DOSSIER-R-1", fee_amount=90000)
    payment = start(fast_config, "DOSSIER-R-1", gateway="momo")
    assert momo_ipn(fast_config, fake_momo.pay(payment["txn_ref"])).status_code == 204
    fast_announce("DOSSIER-R-1", new_status="stopped")
    wait_for(lambda: (payment_db.payment(payment["txn_ref"])["refund_attempts"] or 0) >= 2, message="retries")
    with rpc_proxy(fast_config) as rpc:
        seen = rpc.payment.get_payment(payment["txn_ref"])
    assert seen["status"] == "refund_pending" and "hoàn tiền" in seen["refund_error"]
    fake_momo.refuse_refunds = None
    wait_for(lambda: status_of(payment_db, payment["txn_ref"]) == "refunded", message="refund after retry")
    assert len(fake_momo.refunds) == 1 and fake_momo.refunds[0]["amount"] == 90000


def test_second_success_for_a_paid_dossier_is_refunded(payment_container, payment_config, announce, fake_vnpay,
                                                       payment_db, payment_database):
    announce("DOSSIER-2X", fee_amount=200000)
    first = start(payment_config, "DOSSIER-2X")
    # an unexpired pending attempt is handed out again; one about to expire is not, so a second order exists
    assert start(payment_config, "DOSSIER-2X")["txn_ref"] == first["txn_ref"]
    payment_db.set_expires_at(first["txn_ref"], datetime.now(timezone.utc) + timedelta(seconds=60))
    second = start(payment_config, "DOSSIER-2X")
    assert second["txn_ref"] != first["txn_ref"]
    for payment in (first, second):
        fake_vnpay.visit(payment["pay_url"])
    assert vnpay_ipn(payment_config, fake_vnpay.pay(first["txn_ref"]))["RspCode"] == "00"
    assert vnpay_ipn(payment_config, fake_vnpay.pay(second["txn_ref"]))["RspCode"] == "00"
    wait_for(lambda: status_of(payment_db, second["txn_ref"]) == "refunded", message="duplicate refunded")
    assert status_of(payment_db, first["txn_ref"]) == "succeeded"
    assert payment_db.charge("DOSSIER-2X")["paid_txn_ref"] == first["txn_ref"]
    assert [h["new_status"] for h in payment_db.history(second["txn_ref"])] == [
        "pending", "succeeded", "refund_pending", "refunded"]
    assert len(outbox_events(payment_database.engine, "payment_refunded")) == 1
