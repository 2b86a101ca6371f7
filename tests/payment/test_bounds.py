"""start_payment's bounded input: return URL allow-list, plain client IPs, reused and capped attempts,
the pending row stored before the gateway is called; reconcile's RPC size limit."""
import pytest
import sqlalchemy as sa
from nameko.exceptions import RemoteError

from payment.orm import payments
from tests.helpers import rpc_proxy
from tests.payment.conftest import make_payment_config

RETURN_URL = "https://dichvucong.example.vn/thanh-toan/ket-qua"


def rows(engine):
    with engine.connect() as connection:
        return connection.execute(sa.select(payments).order_by(payments.c.id)).mappings().all()


@pytest.mark.parametrize("return_url, client_ip, field", [
    ("https://evil.example/steal", "203.0.113.7", "return_url"),
    ("http://dichvucong.example.vn/thanh-toan", "203.0.113.7", "return_url"),  # http outside dev mode
    ("https://user:pw@dichvucong.example.vn/", "203.0.113.7", "return_url"),
    ("https://dichvucong.example.vn:8443/x", "203.0.113.7", "return_url"),
    (RETURN_URL, "fe80::1%eth0-with-a-very-long-zone-name-that-would-not-fit", "client_ip"),
    (RETURN_URL, "fe80::1%1", "client_ip"),
    (RETURN_URL, "203.0.113.7\n", "client_ip"),
    (RETURN_URL + "?" + "a" * 1000, "203.0.113.7", "return_url"),
])
def test_refused_start_payment_changes_nothing(payment_container, payment_config, announce, payment_database,
                                                fake_vnpay, return_url, client_ip, field):
    announce("STP-HN-261204-BOUND1")
    with rpc_proxy(payment_config) as rpc:
        with pytest.raises(RemoteError) as refused:
            rpc.payment.start_payment("STP-HN-261204-BOUND1", "vnpay", return_url, client_ip)
    assert refused.value.exc_type == "ValidationError" and field in refused.value.value
    assert rows(payment_database.engine) == [] and fake_vnpay.orders == {}


def test_a_pending_attempt_is_reused_and_attempts_are_capped(start_payment_service, rabbit_config, payment_database,
                                                             fake_vnpay, fake_momo, announce, payment_db):
    payment_database.truncate()
    config = make_payment_config(rabbit_config, payment_database, fake_vnpay, fake_momo, PAYMENT_MAX_ATTEMPTS=2)
    start_payment_service(config)
    announce("STP-HN-261204-CAP001")
    with rpc_proxy(config) as rpc:
        first = rpc.payment.start_payment("STP-HN-261204-CAP001", "vnpay", RETURN_URL, "203.0.113.7")
        again = rpc.payment.start_payment("STP-HN-261204-CAP001", "vnpay", RETURN_URL, "203.0.113.7")
        assert again["txn_ref"] == first["txn_ref"] and again["pay_url"] == first["pay_url"]
        momo = rpc.payment.start_payment("STP-HN-261204-CAP001", "momo", RETURN_URL, "203.0.113.7")
        assert momo["txn_ref"] != first["txn_ref"]
        # the vnpay attempt about to expire is not handed out again: a third attempt is over the cap
        payment_db.set_expires_at(first["txn_ref"], payment_db.payment(first["txn_ref"])["created_at"])
        with pytest.raises(RemoteError) as refused:
            rpc.payment.start_payment("STP-HN-261204-CAP001", "vnpay", RETURN_URL, "203.0.113.7")
    assert refused.value.exc_type == "ValidationError" and "dossier_code" in refused.value.value
    assert len(rows(payment_database.engine)) == 2


def test_the_pending_row_exists_before_the_gateway_answers(start_payment_service, rabbit_config, payment_database,
                                                           fake_vnpay, fake_momo, announce):
    payment_database.truncate()
    config = make_payment_config(rabbit_config, payment_database, fake_vnpay, fake_momo,
                                 MOMO_API_BASE="http://127.0.0.1:9")  # nothing listens: the create call fails
    start_payment_service(config)
    announce("STP-HN-261204-DOWN01")
    with rpc_proxy(config) as rpc:
        with pytest.raises(RemoteError) as refused:
            rpc.payment.start_payment("STP-HN-261204-DOWN01", "momo", RETURN_URL, "203.0.113.7")
    assert refused.value.exc_type == "GatewayUnavailable"
    [row] = rows(payment_database.engine)
    assert row["status"] == "failed" and row["pay_url"] is None and row["client_ip"] == "203.0.113.7"


def test_reconcile_by_rpc_is_bounded(payment_container, payment_config):
    with rpc_proxy(payment_config, role="finance") as rpc:
        with pytest.raises(RemoteError) as refused:
            rpc.payment.reconcile("vnpay", "txn_ref,gateway_txn_no,amount,status,paid_at\n" + "x" * (2 * 1024 * 1024))
    assert refused.value.exc_type == "ValidationError" and "settlement_csv" in refused.value.value
