"""Outbox and inbox of the dossier service: no lost, duplicated or reordered events."""
import eventlet
from nameko.testing.utils import get_extension

from portal_shared.extensions.database import Database
from tests.helpers import make_collector, rpc_proxy, wait_for

UNREACHABLE_BROKER = "amqp://guest:guest@127.0.0.1:1/"


def relay_of(container):
    return get_extension(container, Database).relay


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


# A redelivered payment_succeeded taking effect once: tests/payment/test_event_checks.py (a payment
# event is applied only once the payment service confirms it, so that test runs both services).
