"""Payment's side of CONTRACT section 5: who may start, read and reconcile payments."""
import eventlet
import pytest
from kombu import Connection
from nameko.exceptions import RemoteError

from tests.helpers import rpc_proxy, wait_for

RETURN_URL = "https://dichvucong.example.vn/thanh-toan/ket-qua"
APPLICANT = {"full_name": "Trần Thị Bình", "id_number": "079199001234", "phone": "0912345678"}


def refused(call, exc_type):
    with pytest.raises(RemoteError) as error:
        call()
    assert error.value.exc_type == exc_type, error.value
    return error.value


@pytest.fixture
def dossier_awaiting_payment(start_dossier, payment_container, payment_db):
    config = start_dossier()
    with rpc_proxy(config, role="officer", agencies=["STP-HN"]) as rpc:
        code = rpc.dossier.submit_dossier("LLTP-01", APPLICANT)["code"]
        rpc.dossier.act_on_dossier(code, "accept", "can-bo")
    wait_for(lambda: payment_db.charge(code), message="charge from the dossier event")
    return code


def test_citizen_and_officer_rules_for_payments(payment_config, dossier_awaiting_payment, payment_db):
    code = dossier_awaiting_payment
    with rpc_proxy(payment_config, role="citizen", id_number="001099099999") as rpc:
        refused(lambda: rpc.payment.start_payment(code, "vnpay", RETURN_URL, "203.0.113.7"), "Forbidden")
        refused(lambda: rpc.payment.list_payments(code), "Forbidden")
    with rpc_proxy(payment_config, role="officer", agencies=["CA-HN"]) as rpc:
        refused(lambda: rpc.payment.start_payment(code, "vnpay", RETURN_URL, "203.0.113.7"), "Forbidden")
    with rpc_proxy(payment_config, role="operator") as rpc:
        refused(lambda: rpc.payment.list_payments(code), "Forbidden")
    with rpc_proxy(payment_config, token=None) as rpc:
        refused(lambda: rpc.payment.start_payment(code, "vnpay", RETURN_URL, "203.0.113.7"), "Unauthorized")
    # nothing was created by the refusals:
    with rpc_proxy(payment_config, role="finance") as rpc:
        assert rpc.payment.list_payments(code) == []
    # the applicant (checked through the dossier service with payment's own service token) may pay
    with rpc_proxy(payment_config, role="citizen", id_number=APPLICANT["id_number"]) as rpc:
        payment = rpc.payment.start_payment(code, "vnpay", RETURN_URL, "203.0.113.7")
        assert rpc.payment.get_payment(payment["txn_ref"])["dossier_code"] == code
    with rpc_proxy(payment_config, role="officer", agencies=["STP-HN"]) as rpc:
        assert [p["txn_ref"] for p in rpc.payment.list_payments(code)] == [payment["txn_ref"]]
    with rpc_proxy(payment_config, role="officer", agencies=["CA-HN"]) as rpc:
        refused(lambda: rpc.payment.get_payment(payment["txn_ref"]), "Forbidden")


def test_reconcile_needs_the_finance_role(payment_container, payment_config, announce, payment_db):
    announce("STP-HN-261126-RECON1", fee_amount=200000)
    with rpc_proxy(payment_config, role="officer") as rpc:
        refused(lambda: rpc.payment.reconcile("vnpay", "txn_ref,gateway_txn_no,amount,status,paid_at\n"), "Forbidden")
    with rpc_proxy(payment_config, role="citizen", id_number="001099012345") as rpc:
        refused(lambda: rpc.payment.reconcile("vnpay", "txn_ref,gateway_txn_no,amount,status,paid_at\n"), "Forbidden")
    with rpc_proxy(payment_config, role="finance") as rpc:
        report = rpc.payment.reconcile("vnpay", "txn_ref,gateway_txn_no,amount,status,paid_at\n")
    assert report["rows"] == 0


PAYMENT_STATUS_QUEUE = "evt-dossier-dossier_status_changed--payment.on_dossier_status_changed"


@pytest.fixture
def dossier_event_not_yet_at_payment(rabbit_config, start_dossier, payment_container, payment_db):
    """A dossier accepted (its fee due) whose dossier_status_changed events never reach payment: payment's
    queue is unbound first, as if the event were still on its way."""
    config = start_dossier()
    with Connection(rabbit_config["AMQP_URI"]) as connection:
        connection.default_channel.queue_unbind(PAYMENT_STATUS_QUEUE, exchange="dossier.events",
                                                routing_key="dossier_status_changed")
    with rpc_proxy(config, role="officer", agencies=["STP-HN"]) as rpc:
        code = rpc.dossier.submit_dossier("LLTP-01", APPLICANT)["code"]
        assert rpc.dossier.act_on_dossier(code, "accept", "can-bo")["status"] == "payment_requested"
    eventlet.sleep(1.0)
    assert payment_db.charge(code) is None, "the event reached payment: the test proves nothing"
    return code


def test_start_payment_ahead_of_the_dossier_event_learns_the_charge_from_the_dossier_service(
        payment_config, dossier_event_not_yet_at_payment, payment_db):
    code = dossier_event_not_yet_at_payment
    with rpc_proxy(payment_config, role="citizen", id_number="001099099999") as rpc:  # someone else's dossier
        refused(lambda: rpc.payment.start_payment(code, "vnpay", RETURN_URL, "203.0.113.7"), "Forbidden")
    assert payment_db.charge(code) is None  # a refusal stores nothing
    with rpc_proxy(payment_config, role="citizen", id_number=APPLICANT["id_number"]) as rpc:
        payment = rpc.payment.start_payment(code, "vnpay", RETURN_URL, "203.0.113.7")
        assert (payment["status"], payment["amount"], payment["dossier_code"]) == ("pending", 200000, code)
        assert rpc.payment.start_payment(code, "vnpay", RETURN_URL, "203.0.113.7")["txn_ref"] == payment["txn_ref"]
    charge = payment_db.charge(code)
    assert (charge["status"], charge["amount"], charge["agency_code"]) == ("due", 200000, "STP-HN")


def test_start_payment_for_a_dossier_with_nothing_due_still_says_so(payment_config, payment_container,
                                                                    start_dossier):
    config = start_dossier()
    with rpc_proxy(config, role="officer", agencies=["STP-HN"]) as rpc:
        code = rpc.dossier.submit_dossier("LLTP-01", APPLICANT)["code"]  # submitted, not yet accepted
    with rpc_proxy(payment_config, role="citizen", id_number=APPLICANT["id_number"]) as rpc:
        refused(lambda: rpc.payment.start_payment(code, "vnpay", RETURN_URL, "203.0.113.7"), "NoPaymentDue")
        refused(lambda: rpc.payment.start_payment("STP-HN-261204-NOSUCH", "vnpay", RETURN_URL, "203.0.113.7"),
                "NoPaymentDue")
