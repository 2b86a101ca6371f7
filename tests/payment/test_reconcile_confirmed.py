"""Reconciliation fixes only what the gateway confirms (CONTRACT 3.4): the issue's forged reconcile line."""
import sqlalchemy as sa

from portal_shared.schema import outbox_table
from tests.helpers import rpc_proxy

HEADER = "txn_ref,gateway_txn_no,amount,status,paid_at"
RETURN_URL = "https://dichvucong.example.vn/thanh-toan/ket-qua"


def succeeded_events(engine):
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(outbox_table).where(
            outbox_table.c.event_type == "payment_succeeded")).scalar_one()


def test_a_line_the_gateway_does_not_confirm_changes_nothing_and_a_confirmed_one_is_fixed(
        payment_container, payment_config, announce, fake_vnpay, payment_db, payment_database):
    announce("STP-HN-261204-RECON2", fee_amount=200000)
    with rpc_proxy(payment_config, role="officer") as rpc:
        payment = rpc.payment.start_payment("STP-HN-261204-RECON2", "vnpay", RETURN_URL, "203.0.113.7")
    fake_vnpay.visit(payment["pay_url"])  # the citizen opened the pay page but did not pay
    line = f"{payment['txn_ref']},99999999,200000,success,2026-12-04T10:00:00+07:00"

    with rpc_proxy(payment_config, role="finance") as rpc:
        report = rpc.payment.reconcile("vnpay", f"{HEADER}\n{line}\n")
    assert report["fixed"] == []
    assert [item["txn_ref"] for item in report["unconfirmed"]] == [payment["txn_ref"]]
    assert "pending" in report["unconfirmed"][0]["reason"]
    assert payment_db.payment(payment["txn_ref"])["status"] == "pending"
    assert succeeded_events(payment_database.engine) == 0
    assert [h["source"] for h in payment_db.history(payment["txn_ref"])] == ["create"]

    fake_vnpay.pay(payment["txn_ref"])  # paid at VNPay; the IPN never reached us
    with rpc_proxy(payment_config, role="finance") as rpc:
        report = rpc.payment.reconcile("vnpay", f"{HEADER}\n{line}\n")
    assert [item["txn_ref"] for item in report["fixed"]] == [payment["txn_ref"]]
    assert report["unconfirmed"] == []
    assert payment_db.payment(payment["txn_ref"])["status"] == "succeeded"
    assert succeeded_events(payment_database.engine) == 1


def test_an_order_unknown_at_the_gateway_is_unconfirmed(payment_container, payment_config, announce,
                                                        payment_db):
    announce("STP-HN-261204-RECON3", fee_amount=200000)
    with rpc_proxy(payment_config, role="officer") as rpc:
        payment = rpc.payment.start_payment("STP-HN-261204-RECON3", "vnpay", RETURN_URL, "203.0.113.7")
    with rpc_proxy(payment_config, role="finance") as rpc:
        report = rpc.payment.reconcile(
            "vnpay", f"{HEADER}\n{payment['txn_ref']},1,200000,success,2026-12-04T10:00:00+07:00\n")
    assert report["fixed"] == [] and len(report["unconfirmed"]) == 1
    assert payment_db.payment(payment["txn_ref"])["status"] == "pending"
