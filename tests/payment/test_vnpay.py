"""VNPay end to end against the fake VNPay: pay URL, IPN answers, concurrency."""
import hashlib
import hmac
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit

import eventlet
import pytest
import sqlalchemy as sa
from nameko.exceptions import RemoteError

from payment.orm import payments
from portal_shared.schema import outbox_table
from tests.helpers import make_collector, rpc_proxy, wait_for
from tests.payment.conftest import make_payment_config, vnpay_ipn

RETURN_URL = "https://dichvucong.example.vn/thanh-toan/ket-qua"


def outbox_events(engine, event_type):
    with engine.connect() as connection:
        return [row.payload for row in connection.execute(
            sa.select(outbox_table.c.payload).where(outbox_table.c.event_type == event_type)
            .order_by(outbox_table.c.id))]


def start(config, dossier_code, gateway="vnpay", **kwargs):
    with rpc_proxy(config) as rpc:
        return rpc.payment.start_payment(dossier_code, gateway, RETURN_URL, "203.0.113.7", **kwargs)


@pytest.fixture
def succeeded_collector(container_factory, rabbit_config):
    collector = make_collector("payment", "payment_succeeded", name="succeeded_collector")
    container_factory(collector, rabbit_config).start()
    return collector


def test_pay_url_is_signed_as_vnpay_expects(payment_container, payment_config, announce, fake_vnpay):
    announce("STP-HN-261126-AAAAA1", fee_amount=200000)
    payment = start(payment_config, "STP-HN-261126-AAAAA1", bank_code="NCB", locale="en")
    assert payment["status"] == "pending" and payment["amount"] == 200000 and payment["gateway"] == "vnpay"
    url = urlsplit(payment["pay_url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == fake_vnpay.payment_url
    params = dict(parse_qsl(url.query))
    signature = params.pop("vnp_SecureHash")
    expected = hmac.new(fake_vnpay.hash_secret.encode(), urlencode(sorted(params.items())).encode(),
                        hashlib.sha512).hexdigest()
    assert hmac.compare_digest(signature, expected)
    assert params["vnp_TxnRef"] == payment["txn_ref"] and params["vnp_Amount"] == "20000000"
    assert params["vnp_ReturnUrl"] == RETURN_URL and params["vnp_IpAddr"] == "203.0.113.7"
    assert params["vnp_BankCode"] == "NCB" and params["vnp_Locale"] == "en" and params["vnp_Command"] == "pay"
    created = datetime.strptime(params["vnp_CreateDate"], "%Y%m%d%H%M%S")
    expires = datetime.strptime(params["vnp_ExpireDate"], "%Y%m%d%H%M%S")
    assert (expires - created).total_seconds() == 15 * 60
    assert params["vnp_CreateDate"] == datetime.fromisoformat(payment["created_at"]).strftime("%Y%m%d%H%M%S")
    assert payment["created_at"].endswith("+07:00")
    assert fake_vnpay.visit(payment["pay_url"]).status_code == 200


def test_start_payment_refuses_bad_requests(payment_container, payment_config, announce):
    with rpc_proxy(payment_config) as rpc:
        with pytest.raises(RemoteError) as error:
            rpc.payment.start_payment("X-1", "paypal", "not a url", "999.1.1.1", locale="fr")
        assert error.value.exc_type == "ValidationError"
        for name in ("gateway", "return_url", "client_ip", "locale"):
            assert name in error.value.value
        with pytest.raises(RemoteError) as error:
            rpc.payment.start_payment("NO-SUCH-DOSSIER", "vnpay", RETURN_URL, "203.0.113.7")
        assert error.value.exc_type == "NoPaymentDue"
        with pytest.raises(RemoteError) as error:
            rpc.payment.get_payment("PNOPE")
        assert error.value.exc_type == "PaymentNotFound"


def test_gateway_without_credentials_is_unavailable(start_payment_service, rabbit_config, payment_database,
                                                    fake_vnpay, fake_momo, announce, payment_db):
    payment_database.truncate()
    config = make_payment_config(rabbit_config, payment_database, fake_vnpay, fake_momo, MOMO_SECRET_KEY="",
                                 VNPAY_HASH_SECRET="")
    start_payment_service(config)
    announce("DOSSIER-NOCRED", fee_amount=50000)
    for gateway in ("momo", "vnpay"):
        with pytest.raises(RemoteError) as error:
            start(config, "DOSSIER-NOCRED", gateway=gateway)
        assert error.value.exc_type == "GatewayUnavailable"
    with payment_database.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(payments)).scalar_one() == 0


def test_each_ipn_answer_and_rejections_change_nothing(payment_container, payment_config, announce, fake_vnpay,
                                                       payment_db, payment_database, succeeded_collector):
    announce("DOSSIER-IPN-1", fee_amount=150000)
    payment = start(payment_config, "DOSSIER-IPN-1")
    txn_ref = payment["txn_ref"]
    fake_vnpay.visit(payment["pay_url"])
    good = fake_vnpay.pay(txn_ref)

    tampered = {**good, "vnp_Amount": "100"}
    assert vnpay_ipn(payment_config, tampered)["RspCode"] == "97"
    assert vnpay_ipn(payment_config, {k: v for k, v in good.items() if k != "vnp_SecureHash"})["RspCode"] == "97"
    assert vnpay_ipn(payment_config, {})["RspCode"] == "97"
    unknown = fake_vnpay.ipn_params(txn_ref, vnp_TxnRef="PUNKNOWN0000000001")
    assert vnpay_ipn(payment_config, unknown)["RspCode"] == "01"
    wrong_amount = fake_vnpay.ipn_params(txn_ref, amount=140000)
    assert vnpay_ipn(payment_config, wrong_amount)["RspCode"] == "04"
    malformed = fake_vnpay.ipn_params(txn_ref, vnp_Amount="abc")
    assert vnpay_ipn(payment_config, malformed) == {"RspCode": "99", "Message": "Unknown error"}
    assert payment_db.payment(txn_ref)["status"] == "pending"
    assert [h["new_status"] for h in payment_db.history(txn_ref)] == ["pending"]
    assert outbox_events(payment_database.engine, "payment_succeeded") == []

    assert vnpay_ipn(payment_config, good) == {"RspCode": "00", "Message": "Confirm Success"}
    assert vnpay_ipn(payment_config, good)["RspCode"] == "02"
    assert vnpay_ipn(payment_config, fake_vnpay.ipn_params(txn_ref, amount=1))["RspCode"] == "04"

    row = payment_db.payment(txn_ref)
    assert row["status"] == "succeeded" and row["gateway_txn_no"] == good["vnp_TransactionNo"]
    history = payment_db.history(txn_ref)
    assert [(h["old_status"], h["new_status"], h["source"]) for h in history] == [
        (None, "pending", "create"), ("pending", "succeeded", "ipn")]
    assert history[1]["evidence"]["gateway_answer"]["vnp_TransactionNo"] == good["vnp_TransactionNo"]
    assert payment_db.charge("DOSSIER-IPN-1")["status"] == "paid"

    event = wait_for(lambda: succeeded_collector.received, message="payment_succeeded")[0]
    assert set(event) == {"event_id", "occurred_at", "txn_ref", "dossier_code", "amount", "gateway",
                          "gateway_txn_no", "paid_at"}
    assert (event["txn_ref"], event["dossier_code"], event["amount"], event["gateway"]) == (
        txn_ref, "DOSSIER-IPN-1", 150000, "vnpay")
    assert event["gateway_txn_no"] == good["vnp_TransactionNo"] and event["paid_at"].endswith("+07:00")
    with rpc_proxy(payment_config) as rpc:
        assert rpc.payment.get_payment(txn_ref)["status"] == "succeeded"
        with pytest.raises(RemoteError) as error:
            rpc.payment.start_payment("DOSSIER-IPN-1", "vnpay", RETURN_URL, "203.0.113.7")
        assert error.value.exc_type == "AlreadyPaid"
    eventlet.sleep(0.5)
    assert len(succeeded_collector.received) == 1


def test_failed_payment_then_a_new_attempt(payment_container, payment_config, announce, fake_vnpay, payment_db,
                                           payment_database):
    announce("DOSSIER-FAIL-1", fee_amount=100000)
    first = start(payment_config, "DOSSIER-FAIL-1")
    fake_vnpay.visit(first["pay_url"])
    cancelled = fake_vnpay.pay(first["txn_ref"], response_code="24", transaction_status="02")
    assert vnpay_ipn(payment_config, cancelled)["RspCode"] == "00"
    assert vnpay_ipn(payment_config, cancelled)["RspCode"] == "02"
    assert payment_db.payment(first["txn_ref"])["status"] == "failed"
    failed_events = outbox_events(payment_database.engine, "payment_failed")
    assert len(failed_events) == 1 and "24" in failed_events[0]["reason"]
    assert failed_events[0]["paid_at"] is None

    second = start(payment_config, "DOSSIER-FAIL-1")
    assert second["txn_ref"] != first["txn_ref"]
    fake_vnpay.visit(second["pay_url"])
    assert vnpay_ipn(payment_config, fake_vnpay.pay(second["txn_ref"]))["RspCode"] == "00"
    with rpc_proxy(payment_config) as rpc:
        statuses = {p["txn_ref"]: p["status"] for p in rpc.payment.list_payments("DOSSIER-FAIL-1")}
    assert statuses == {first["txn_ref"]: "failed", second["txn_ref"]: "succeeded"}
    assert len(outbox_events(payment_database.engine, "payment_succeeded")) == 1


def deliver_concurrently(ipns):
    pool = eventlet.GreenPool(len(ipns))
    return [answer["RspCode"] for answer in pool.imap(lambda job: vnpay_ipn(*job), ipns)]


def test_twenty_concurrent_identical_ipns_make_one_transition(payment_container, payment_config, announce,
                                                             fake_vnpay, payment_db, payment_database):
    announce("DOSSIER-RACE-1", fee_amount=200000)
    payment = start(payment_config, "DOSSIER-RACE-1")
    fake_vnpay.visit(payment["pay_url"])
    params = fake_vnpay.pay(payment["txn_ref"])
    codes = deliver_concurrently([(payment_config, params)] * 20)
    assert sorted(codes) == ["00"] + ["02"] * 19
    assert len(outbox_events(payment_database.engine, "payment_succeeded")) == 1
    assert [h["new_status"] for h in payment_db.history(payment["txn_ref"])] == ["pending", "succeeded"]


def test_two_service_processes_receiving_the_same_ipn(start_payment_service, payment_config, rabbit_config,
                                                      payment_database, fake_vnpay, fake_momo, announce, payment_db):
    start_payment_service(payment_config)
    other_config = make_payment_config(rabbit_config, payment_database, fake_vnpay, fake_momo)
    start_payment_service(other_config)
    announce("DOSSIER-RACE-2", fee_amount=200000)
    payment = start(payment_config, "DOSSIER-RACE-2")
    fake_vnpay.visit(payment["pay_url"])
    params = fake_vnpay.pay(payment["txn_ref"])
    codes = deliver_concurrently([(payment_config, params), (other_config, params)] * 8)
    assert sorted(codes) == ["00"] + ["02"] * 15
    assert len(outbox_events(payment_database.engine, "payment_succeeded")) == 1
    assert [h["new_status"] for h in payment_db.history(payment["txn_ref"])] == ["pending", "succeeded"]


CONTRACT_PAYMENT_FIELDS = {"txn_ref", "dossier_code", "amount", "gateway", "status", "pay_url", "gateway_txn_no",
                           "created_at", "expires_at", "paid_at"}


def test_payment_has_exactly_the_contract_fields(payment_container, payment_config, announce):
    announce("DOSSIER-FIELDS-1", fee_amount=200000)
    payment = start(payment_config, "DOSSIER-FIELDS-1")
    assert set(payment) == CONTRACT_PAYMENT_FIELDS
    with rpc_proxy(payment_config) as rpc:
        assert set(rpc.payment.get_payment(payment["txn_ref"])) == CONTRACT_PAYMENT_FIELDS
        assert [set(p) for p in rpc.payment.list_payments("DOSSIER-FIELDS-1")] == [CONTRACT_PAYMENT_FIELDS]


def test_odd_but_signed_ipns_get_vnpay_answers_not_99(payment_container, payment_config, announce, fake_vnpay,
                                                      payment_db):
    announce("DOSSIER-IPN-ODD", fee_amount=150000)
    payment = start(payment_config, "DOSSIER-IPN-ODD")
    fake_vnpay.visit(payment["pay_url"])
    good = fake_vnpay.pay(payment["txn_ref"])
    assert vnpay_ipn(payment_config, {**good, "vnp_SecureHash": "chữ ký"})["RspCode"] == "97"
    not_whole = fake_vnpay.ipn_params(payment["txn_ref"], vnp_Amount="15000050")
    assert vnpay_ipn(payment_config, not_whole)["RspCode"] == "04"
    unknown = fake_vnpay.ipn_params(payment["txn_ref"], vnp_Amount="15000050", vnp_TxnRef="PUNKNOWN0000000002")
    assert vnpay_ipn(payment_config, unknown)["RspCode"] == "01"
    assert payment_db.payment(payment["txn_ref"])["status"] == "pending"
    assert vnpay_ipn(payment_config, good)["RspCode"] == "00"
