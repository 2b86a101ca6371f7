"""Events are checked, not trusted: dossier applies a payment_succeeded only when it carries payment's
signature or payment confirms it."""
import json
import uuid

import eventlet
import pytest
import sqlalchemy as sa
from kombu import Connection, Exchange
from nameko.standalone.events import event_dispatcher

from payment.messagebus import EVENT_KEY
from portal_shared.deadletters import ERROR_HEADER
from portal_shared.event_signing import HEADER, load_key, signed_headers, verify
from portal_shared.schema import outbox_table
from tests.helpers import make_collector, rpc_proxy, wait_for
from tests.payment.conftest import vnpay_ipn

DLQ = "evt-payment-payment_succeeded--dossier.on_payment_succeeded.dlq"
RETURN_URL = "https://dichvucong.example.vn/thanh-toan/ket-qua"
APPLICANT = {"full_name": "Phạm Văn Dũng", "id_number": "079199007777", "phone": "0912345678"}


def parked(rabbit_config):
    """The dead-letter queue's messages as (payload, reason), left in place."""
    found = []
    with Connection(rabbit_config["AMQP_URI"]) as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(DLQ, no_ack=False)) is not None:
            found.append((json.loads(message.body), message.headers.get(ERROR_HEADER, "")))
        channel.basic_recover(requeue=True)
    return found


def dossier_calls(config, payment_db=None):
    """``awaiting_payment()`` (a dossier accepted, its fee due; with ``payment_db``, once payment has the
    charge) and ``dossier(code)`` against the dossier service of ``config``."""

    def awaiting_payment():
        with rpc_proxy(config) as rpc:
            code = rpc.dossier.submit_dossier("LLTP-01", APPLICANT)["code"]
            assert rpc.dossier.act_on_dossier(code, "accept", "can-bo")["status"] == "payment_requested"
        if payment_db is not None:
            wait_for(lambda: payment_db.charge(code), message="charge")
        return code

    def dossier(code):
        with rpc_proxy(config) as rpc:
            return rpc.dossier.get_dossier(code)

    return awaiting_payment, dossier


@pytest.fixture
def both(start_dossier, payment_container, payment_config, payment_db):
    config = start_dossier()
    return (*dossier_calls(config, payment_db), config["database"])


def forged(code, txn_ref, amount=200000):
    return {"event_id": str(uuid.uuid4()), "occurred_at": "2026-12-04T10:00:00+07:00", "txn_ref": txn_ref,
            "dossier_code": code, "amount": amount, "gateway": "vnpay", "gateway_txn_no": "1",
            "paid_at": "2026-12-04T10:00:00+07:00"}


def test_forged_payment_events_are_parked_with_the_reason_and_change_nothing(
        both, payment_config, rabbit_config, fake_vnpay):
    awaiting_payment, dossier, _ = both
    code = awaiting_payment()
    with rpc_proxy(payment_config, role="officer") as rpc:
        pending = rpc.payment.start_payment(code, "vnpay", RETURN_URL, "203.0.113.7")
    dispatch = event_dispatcher(rabbit_config)
    dispatch("payment", "payment_succeeded", forged(code, "P-NO-SUCH-REF"))           # unknown payment
    dispatch("payment", "payment_succeeded", forged(code, pending["txn_ref"]))        # real but only pending
    dispatch("payment", "payment_succeeded", {**forged(code, None), "txn_ref": None})  # nothing to check
    found = wait_for(lambda: len(parked(rabbit_config)) == 3 and parked(rabbit_config), timeout=20,
                     message="three parked events")
    reasons = sorted(reason for _, reason in found)
    assert any("unknown to the payment service" in reason for reason in reasons)
    assert any("its status is pending" in reason for reason in reasons)
    assert any("without txn_ref" in reason for reason in reasons)
    current = dossier(code)
    assert current["status"] == "payment_requested" and current["fee_paid"] is False


def test_a_wrong_amount_or_dossier_is_parked_and_a_real_event_redelivered_applies_once(
        both, payment_config, payment_database, rabbit_config, fake_vnpay, container_factory):
    awaiting_payment, dossier, dossier_database = both
    code, other = awaiting_payment(), awaiting_payment()
    collector = make_collector("dossier", "dossier_status_changed", name="status_collector")
    container_factory(collector, rabbit_config).start()
    with rpc_proxy(payment_config, role="officer") as rpc:
        payment = rpc.payment.start_payment(code, "vnpay", RETURN_URL, "203.0.113.7")
    fake_vnpay.visit(payment["pay_url"])
    dispatch = event_dispatcher(rabbit_config)
    dispatch("payment", "payment_succeeded", forged(code, payment["txn_ref"]))  # not yet paid: parked
    wait_for(lambda: len(parked(rabbit_config)) == 1, message="parked before the IPN")
    assert vnpay_ipn(payment_config, fake_vnpay.pay(payment["txn_ref"]))["RspCode"] == "00"
    wait_for(lambda: dossier(code)["status"] == "processing", timeout=20, message="processing")

    dispatch("payment", "payment_succeeded", forged(code, payment["txn_ref"], amount=1000))  # wrong amount
    dispatch("payment", "payment_succeeded", forged(other, payment["txn_ref"]))  # someone else's payment
    found = wait_for(lambda: len(parked(rabbit_config)) == 3 and parked(rabbit_config), message="parked")
    assert any("its amount is 200000, not 1000" in reason for _, reason in found)
    assert any("another dossier" in reason for _, reason in found)
    assert dossier(other)["status"] == "payment_requested"

    with payment_database.engine.connect() as connection:
        [real] = connection.execute(sa.select(outbox_table.c.payload).where(
            outbox_table.c.event_type == "payment_succeeded")).scalars().all()
    for _ in range(2):  # the broker hands the real event over again
        dispatch("payment", "payment_succeeded", real)
    eventlet.sleep(1.5)
    final = dossier(code)
    assert [h["status"] for h in final["history"]] == ["submitted", "accepted", "payment_requested", "processing"]
    assert [e["new_status"] for e in collector.received if e["dossier_code"] == code].count("processing") == 1
    with dossier_database.engine.connect() as connection:
        claimed = connection.execute(sa.text("SELECT count(*) FROM inbox_messages")).scalar_one()
    assert claimed == 1
    assert len(parked(rabbit_config)) == 3


def publish_payment_event(rabbit_config, payload, headers):
    """A ``payment_succeeded`` as payment's relay sends it: to ``payment.events``, with ``headers``."""
    with Connection(rabbit_config["AMQP_URI"]) as connection:
        producer = connection.Producer(serializer="json")
        producer.publish(payload, exchange=Exchange("payment.events", type="topic", durable=True),
                         routing_key="payment_succeeded", headers=headers, delivery_mode=2, retry=True)


@pytest.fixture
def dossier_alone(start_dossier):
    """The dossier service with no payment service anywhere: an event it applies was not confirmed by RPC."""
    return dossier_calls(start_dossier())


def test_a_signed_payment_event_is_applied_without_asking_payment(dossier_alone, rabbit_config):
    awaiting_payment, dossier = dossier_alone
    code = awaiting_payment()
    event = forged(code, "P-SIGNED-BY-PAYMENT")
    key = load_key(EVENT_KEY)
    assert key, "the root conftest sets PAYMENT_EVENT_KEY"
    publish_payment_event(rabbit_config, event, signed_headers(key, "payment_succeeded", event))
    wait_for(lambda: dossier(code)["status"] == "processing", timeout=10, message="processing with no payment service")
    assert dossier(code)["fee_paid"] is True
    assert parked(rabbit_config) == []


def test_a_wrongly_signed_payment_event_is_confirmed_by_rpc_and_parked(dossier_alone, rabbit_config,
                                                                      payment_container):
    awaiting_payment, dossier = dossier_alone
    code = awaiting_payment()
    event = forged(code, "P-NO-SUCH-REF")
    key = load_key(EVENT_KEY)
    other_key = signed_headers(b"another key of at least 32 bytes!", "payment_succeeded", event)
    tampered = signed_headers(key, "payment_succeeded", {**event, "amount": 1000})  # signed for another amount
    publish_payment_event(rabbit_config, event, other_key)
    publish_payment_event(rabbit_config, event | {"event_id": str(uuid.uuid4())}, tampered)
    found = wait_for(lambda: len(parked(rabbit_config)) == 2 and parked(rabbit_config), timeout=20,
                     message="two parked events")
    assert all("unknown to the payment service" in reason for _, reason in found)
    assert dossier(code)["status"] == "payment_requested" and dossier(code)["fee_paid"] is False


def test_payment_signs_the_events_it_records(both, payment_config, payment_database, fake_vnpay):
    awaiting_payment, dossier, _ = both
    code = awaiting_payment()
    with rpc_proxy(payment_config, role="officer") as rpc:
        payment = rpc.payment.start_payment(code, "vnpay", RETURN_URL, "203.0.113.7")
    fake_vnpay.visit(payment["pay_url"])
    assert vnpay_ipn(payment_config, fake_vnpay.pay(payment["txn_ref"]))["RspCode"] == "00"
    with payment_database.engine.connect() as connection:
        [(payload, headers)] = connection.execute(sa.select(outbox_table.c.payload, outbox_table.c.headers).where(
            outbox_table.c.event_type == "payment_succeeded")).all()
    assert verify(load_key(EVENT_KEY), "payment_succeeded", payload, headers[HEADER])
    wait_for(lambda: dossier(code)["status"] == "processing", timeout=20, message="processing")
