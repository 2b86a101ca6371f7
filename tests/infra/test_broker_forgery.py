"""Broker least privilege against the real RabbitMQ: the issue's forged publishes are refused.

Users get exactly the permissions and topic permissions of infra/rabbitmq/definitions.json
(``portal_vhost`` of test_rabbitmq.py): no write on ``amq.default``, RPC routing keys limited
to the calls each service makes (and replies), events limited to the service's own.
"""
import amqp
import pytest
from amqp.exceptions import AccessRefused
from kombu import Connection

from tests.infra.test_rabbitmq import DEFINITIONS, portal_vhost  # noqa: F401  (fixture)

REPLY_KEY = "5b1c0d0e-7d1f-4a36-9d1e-0d5d1b2f9c11"


def publish(uri, exchange, routing_key, body=b'{"dossier_code": "HS-1", "txn_ref": "P1"}'):
    with Connection(uri) as connection:
        channel = connection.channel()
        channel.basic_publish(amqp.Message(body, content_type="application/json"), exchange=exchange,
                              routing_key=routing_key)
        channel.basic_qos(0, 1, False)  # a synchronous call surfaces the asynchronous channel error


@pytest.mark.parametrize("user, exchange, routing_key", [
    # notify's user drops a payment_succeeded straight into dossier's queue through the default exchange
    ("notify", "", "evt-payment-payment_succeeded--dossier.on_payment_succeeded"),
    ("payment", "", "evt-payment-payment_succeeded--dossier.on_payment_succeeded"),
    # notify's user calls payment.reconcile / act_on_dossier: RPC routing keys it does not need
    ("notify", "nameko-rpc", "payment.reconcile"),
    ("notify", "nameko-rpc", "dossier.act_on_dossier"),
    ("payment", "nameko-rpc", "payment.reconcile"),
    ("dossier", "nameko-rpc", "notify.send_notification"),
    # events the user does not own, on its own exchange or another's
    ("dossier", "dossier.events", "payment_succeeded"),
    ("notify", "payment.events", "payment_succeeded"),
    ("notify", "notify.events", "payment_succeeded"),   # its own exchange carries only its delivery messages
    ("portal_sync", "nameko-rpc", "dossier.act_on_dossier"),
    ("notify", "nameko-rpc", "dossier.get_dossiers"),     # the batch read is portal_sync's only
    # another service's retry exchange
    ("notify", "dossier.retries", "evt-payment-payment_succeeded--dossier.on_payment_succeeded.retry"),
])
def test_forged_publishes_are_refused(portal_vhost, user, exchange, routing_key):  # noqa: F811
    with pytest.raises(AccessRefused):
        publish(portal_vhost[user], exchange, routing_key)


@pytest.mark.parametrize("user, exchange, routing_key", [
    ("dossier", "nameko-rpc", "payment.get_payment"),
    ("payment", "nameko-rpc", "dossier.get_dossier"),
    ("notify", "nameko-rpc", "dossier.get_dossier"),
    ("notify", "nameko-rpc", REPLY_KEY),
    ("dossier", "dossier.events", "dossier_status_changed"),
    ("payment", "payment.events", "payment_refunded"),
    ("notify", "notify.events", "deliver_sms"),      # notify's own delivery queues (notify.pipeline)
    ("portal_sync", "nameko-rpc", "dossier.list_dossiers"),
    ("portal_sync", "nameko-rpc", "dossier.get_dossiers"),   # the delivery batches' read
    ("portal_sync", "nameko-rpc", "dossier.get_dossier"),    # the same from a dossier service without it
])
def test_what_each_service_needs_is_allowed(portal_vhost, user, exchange, routing_key):  # noqa: F811
    publish(portal_vhost[user], exchange, routing_key)  # no AccessRefused


def test_every_service_user_has_topic_permissions_on_the_rpc_and_its_event_exchange():
    topics = {(t["user"], t["exchange"]) for t in DEFINITIONS["topic_permissions"]}
    for service in ("dossier", "payment", "notify"):
        assert (service, "nameko-rpc") in topics
        assert (service, f"{service}.events") in topics
    assert all(t["write"].startswith("^") and t["write"].endswith("$") for t in DEFINITIONS["topic_permissions"])
