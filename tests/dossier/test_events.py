"""Outbox and inbox of the dossier service: no lost, duplicated or reordered events."""
import eventlet
import sqlalchemy as sa
from nameko.standalone.events import event_dispatcher

from portal_shared.db import Database
from tests.helpers import make_collector, rpc_proxy, wait_for

UNREACHABLE_BROKER = "amqp://guest:guest@127.0.0.1:1/"


def relay_of(container):
    return next(dep for dep in container.dependencies if isinstance(dep, Database)).relay


def test_events_committed_while_the_broker_is_unreachable_arrive_once_it_is_back(
    container_factory, dossier_container, dossier_config, applicant
):
    collector = make_collector("dossier", "dossier_status_changed")
    container_factory(collector, dossier_config).start()
    relay = relay_of(dossier_container)
    # The relay's connection to the broker is cut between the commit and the publish.
    relay.amqp_uri = UNREACHABLE_BROKER
    with rpc_proxy(dossier_config) as rpc:
        code = rpc.dossier.submit_dossier("LLTP-01", applicant)["code"]
        rpc.dossier.act_on_dossier(code, "accept", "officer-1")
        rpc.dossier.act_on_dossier(code, "withdraw", "citizen")
    eventlet.sleep(1.0)
    assert collector.received == []
    assert relay.pending_count() == 4

    relay.amqp_uri = dossier_config["AMQP_URI"]
    wait_for(lambda: len(collector.received) >= 4, timeout=40, message="events after the outage")
    assert [e["new_status"] for e in collector.received] == [
        "submitted", "accepted", "payment_requested", "withdrawn"
    ]
    eventlet.sleep(1.0)
    assert len(collector.received) == 4
    assert relay.pending_count() == 0


def test_a_redelivered_payment_event_takes_effect_once(
    container_factory, dossier_container, dossier_config, applicant, dossier_database
):
    collector = make_collector("dossier", "dossier_status_changed")
    container_factory(collector, dossier_config).start()
    with rpc_proxy(dossier_config) as rpc:
        code = rpc.dossier.submit_dossier("GPLX-DOI", applicant)["code"]
        assert rpc.dossier.act_on_dossier(code, "accept", "officer-1")["status"] == "payment_requested"
        wait_for(lambda: len(collector.received) == 3, message="three events")

        payment_event = {
            "event_id": "4b7c6a52-0000-4000-8000-000000000001", "occurred_at": "2026-11-25T10:00:00+07:00",
            "txn_ref": "P0001", "dossier_code": code, "amount": 135_000, "gateway": "vnpay",
            "gateway_txn_no": "14012345", "paid_at": "2026-11-25T10:00:00+07:00",
        }
        dispatch = event_dispatcher(dossier_config)
        for _ in range(3):  # the broker hands the same event over again
            dispatch("payment", "payment_succeeded", payment_event)
        wait_for(lambda: rpc.dossier.get_dossier(code)["status"] == "processing", message="processing")
        eventlet.sleep(1.0)
        dossier = rpc.dossier.get_dossier(code)
    assert dossier["fee_paid"] is True
    assert [h["status"] for h in dossier["history"]] == ["submitted", "accepted", "payment_requested", "processing"]
    assert [e["new_status"] for e in collector.received] == [
        "submitted", "accepted", "payment_requested", "processing"
    ]
    with dossier_database.engine.connect() as connection:
        claimed = connection.execute(sa.text("SELECT count(*) FROM inbox_messages")).scalar_one()
    assert claimed == 1
