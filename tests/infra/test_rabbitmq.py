"""RabbitMQ definitions: one least-privilege user per service, policies, placeholder hashes.

The static tests read infra/rabbitmq/definitions.json. The live test loads the
same permissions, policies and exchanges into a throw-away vhost of the test
broker and runs three small Nameko services under those users: RPC between
services, events both ways and a retry through the `.retry` side queue must
work, and reaching into another service's queues or exchange must be refused.
"""
import json
import re
import uuid
from pathlib import Path
from urllib.parse import urlparse

import amqp
import eventlet
import pytest
from amqp.exceptions import AccessRefused
from kombu import Connection, Exchange, Queue
from nameko.events import EventDispatcher, event_handler
from nameko.rpc import RpcProxy, rpc
from nameko.standalone.rpc import ClusterRpcProxy

from portal_shared.extensions.events import reliable_event_handler
from tests.infra.conftest import REPO, SERVICES

RABBITMQ_DIR = REPO / "infra" / "rabbitmq"
DEFINITIONS = json.loads((RABBITMQ_DIR / "definitions.json").read_text(encoding="utf-8"))


def load_hash_helper():
    namespace = {"__name__": "hash_password"}
    exec(compile(Path(RABBITMQ_DIR / "hash_password.py").read_text(), "hash_password.py", "exec"), namespace)
    return namespace


def permissions_of(user):
    (entry,) = [p for p in DEFINITIONS["permissions"] if p["user"] == user]
    return entry


def allowed(user, operation, resource):
    """RabbitMQ matches permission regexes unanchored (our patterns anchor themselves)."""
    return re.search(permissions_of(user)[operation], resource) is not None


def env_example():
    lines = (REPO / "infra" / "compose.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_every_service_has_its_own_user_on_the_portal_vhost():
    users = {user["name"]: user for user in DEFINITIONS["users"]}
    assert set(SERVICES) < set(users)
    assert DEFINITIONS["vhosts"] == [{"name": "portal"}]
    for service in SERVICES:
        assert users[service]["tags"] == [], f"{service} needs no management tag"
        assert permissions_of(service)["vhost"] == "portal"
        for operation in ("configure", "write", "read"):
            pattern = permissions_of(service)[operation]
            assert pattern.startswith("^(") and pattern.endswith(")$"), f"{service} {operation} is not anchored"
    administrators = [user for user in users.values() if "administrator" in user["tags"]]
    assert [user["name"] for user in administrators] == ["portal-admin"]


@pytest.mark.parametrize(
    "user, operation, resource",
    [
        ("dossier", "configure", "rpc-dossier"),
        ("dossier", "read", "rpc-dossier"),
        ("dossier", "write", "nameko-rpc"),
        ("dossier", "read", "nameko-rpc"),
        ("dossier", "configure", "rpc.reply-dossier-5b1c0d0e-7d1f-4a36-9d1e-0d5d1b2f9c11"),
        ("dossier", "write", "dossier.events"),
        ("dossier", "read", "payment.events"),
        ("dossier", "configure", "evt-payment-payment_succeeded--dossier.on_payment_succeeded"),
        ("dossier", "configure", "evt-payment-payment_succeeded--dossier.on_payment_succeeded.retry"),
        ("dossier", "read", "evt-payment-payment_succeeded--dossier.on_payment_succeeded.dlq"),
        ("dossier", "write", "dossier.retries"),
        ("dossier", "configure", "dossier.retries"),
        ("payment", "read", "dossier.events"),
        ("payment", "write", "payment.events"),
        ("notify", "read", "dossier.events"),
        ("notify", "read", "payment.events"),
    ],
)
def test_a_service_may_use_what_nameko_needs(user, operation, resource):
    assert allowed(user, operation, resource)


@pytest.mark.parametrize(
    "user, operation, resource",
    [
        ("dossier", "read", "rpc-payment"),
        ("dossier", "configure", "rpc-payment"),
        ("dossier", "write", "payment.events"),
        ("dossier", "read", "evt-dossier-dossier_status_changed--notify.on_status_changed"),
        ("dossier", "read", "rpc.reply-payment-5b1c0d0e"),
        ("dossier", "configure", "amq.default"),
        ("dossier", "write", "amq.default"),  # no publishing straight into another service's queue
        ("notify", "write", "amq.default"),
        ("payment", "write", "amq.default"),
        ("notify", "write", "dossier.retries"),
        ("dossier", "read", "notify.events"),
        ("payment", "write", "dossier.events"),
        ("payment", "read", "rpc-dossier"),
        ("notify", "write", "payment.events"),
        ("notify", "read", "rpc-dossier-extra"),
        ("notify", "configure", "some-other-queue"),
    ],
)
def test_a_service_may_not_touch_other_services_resources(user, operation, resource):
    assert not allowed(user, operation, resource)


def test_dead_letter_and_retry_queues_have_policies():
    policies = {policy["name"]: policy for policy in DEFINITIONS["policies"]}
    dlq = next(p for p in policies.values() if re.search(p["pattern"], "evt-a-b--c.d.dlq"))
    assert dlq["apply-to"] == "queues"
    assert dlq["definition"]["queue-mode"] == "lazy"
    assert dlq["definition"]["max-length"] > 0
    assert dlq["definition"]["overflow"] == "reject-publish", "never drop a parked event silently"
    assert any(re.search(p["pattern"], "evt-a-b--c.d.retry") for p in policies.values())
    assert not re.search(dlq["pattern"], "evt-a-b--c.d")


def test_the_placeholder_hashes_match_the_example_env_passwords():
    check_password = load_hash_helper()["check_password"]
    example = env_example()
    hashes = {user["name"]: user["password_hash"] for user in DEFINITIONS["users"]}
    for service in SERVICES:
        assert check_password(example[f"{service.upper()}_AMQP_PASSWORD"], hashes[service])
        assert not check_password("guest", hashes[service])
    assert all(user["hashing_algorithm"] == "rabbit_password_hashing_sha256" for user in DEFINITIONS["users"])


# --- live check against the test broker -----------------------------------------------------------


class DossierProbe:
    name = "dossier"
    dispatch = EventDispatcher()
    paid = []
    attempts = []

    @rpc
    def request_payment(self, dossier_code):
        self.dispatch("dossier_status_changed", {"dossier_code": dossier_code, "new_status": "payment_requested"})
        return dossier_code

    @rpc
    def get_dossier(self, dossier_code):
        return {"code": dossier_code}

    @reliable_event_handler("payment", "payment_succeeded")
    def on_payment_succeeded(self, payload):
        self.attempts.append(payload["dossier_code"])
        if len(self.attempts) == 1:
            raise RuntimeError("first attempt fails: the event goes through the .retry queue")
        self.paid.append(payload["dossier_code"])


class PaymentProbe:
    name = "payment"
    dispatch = EventDispatcher()
    dossier = RpcProxy("dossier")

    @event_handler("dossier", "dossier_status_changed")
    def on_status_changed(self, payload):
        dossier = self.dossier.get_dossier(payload["dossier_code"])  # RPC from service to service
        self.dispatch("payment_succeeded", {"dossier_code": dossier["code"]})


class NotifyProbe:
    name = "notify"
    seen = []

    @event_handler("dossier", "dossier_status_changed")
    def on_status_changed(self, payload):
        self.seen.append(("dossier_status_changed", payload["dossier_code"]))

    @event_handler("payment", "payment_succeeded")
    def on_payment_succeeded(self, payload):
        self.seen.append(("payment_succeeded", payload["dossier_code"]))


@pytest.fixture
def portal_vhost(rabbit_config, rabbit_manager):
    """The test vhost with the definitions' exchanges, policies and (renamed) service users."""
    vhost = rabbit_config["vhost"]
    for exchange in DEFINITIONS["exchanges"]:
        body = {key: exchange[key] for key in ("type", "durable", "auto_delete", "internal", "arguments")}
        rabbit_manager._put("exchanges", vhost, exchange["name"], json=body)
    for policy in DEFINITIONS["policies"]:
        body = {key: policy[key] for key in ("pattern", "definition", "apply-to", "priority")}
        rabbit_manager._put("policies", vhost, policy["name"], json=body)
    suffix = uuid.uuid4().hex[:8]
    hashes = {user["name"]: user for user in DEFINITIONS["users"]}
    passwords = env_example()
    broker = urlparse(rabbit_config["AMQP_URI"])
    uris = {}
    service_users = [user["name"] for user in DEFINITIONS["users"] if not user["tags"]]  # portal_sync too
    try:
        for service in service_users:
            username = f"permcheck-{service}-{suffix}"
            user = hashes[service]
            rabbit_manager._put(
                "users", username,
                json={"password_hash": user["password_hash"], "hashing_algorithm": user["hashing_algorithm"], "tags": ""},
            )
            perms = permissions_of(service)
            rabbit_manager._put(
                "permissions", vhost, username,
                json={"configure": perms["configure"], "write": perms["write"], "read": perms["read"]},
            )
            for topic in DEFINITIONS["topic_permissions"]:
                if topic["user"] == service:
                    rabbit_manager._put("topic-permissions", vhost, username, json={
                        "exchange": topic["exchange"], "write": topic["write"], "read": topic["read"]})
            password = passwords[f"{service.upper()}_AMQP_PASSWORD"]
            uris[service] = f"amqp://{username}:{password}@{broker.hostname}:{broker.port or 5672}/{vhost}"
        yield uris
    finally:
        for service in service_users:
            rabbit_manager._delete("users", f"permcheck-{service}-{suffix}")


def wait_for(condition, seconds=10):
    with eventlet.Timeout(seconds):
        while not condition():
            eventlet.sleep(0.05)


def test_the_service_users_run_rpc_events_and_retries_and_nothing_else(portal_vhost, rabbit_config, container_factory):
    DossierProbe.paid, DossierProbe.attempts, NotifyProbe.seen = [], [], []
    for probe in (DossierProbe, PaymentProbe, NotifyProbe):
        config = {"AMQP_URI": portal_vhost[probe.name], "EVENT_RETRY_BACKOFF_SECONDS": 0.05}
        container_factory(probe, config).start()

    # The driver is an operator (the vhost's guest), like a frontend gateway would be.
    with ClusterRpcProxy({"AMQP_URI": rabbit_config["AMQP_URI"]}) as cluster:
        assert cluster.dossier.request_payment("HS-0001") == "HS-0001"
    wait_for(lambda: DossierProbe.paid == ["HS-0001"] and len(NotifyProbe.seen) == 2)
    assert DossierProbe.attempts == ["HS-0001", "HS-0001"]
    assert sorted(NotifyProbe.seen) == [("dossier_status_changed", "HS-0001"), ("payment_succeeded", "HS-0001")]

    with Connection(portal_vhost["dossier"]) as connection:
        with pytest.raises(AccessRefused):  # another service's RPC queue
            Queue("rpc-payment", channel=connection.channel(), durable=True).declare()
        with pytest.raises(AccessRefused):  # another service's event queue
            connection.channel().basic_get("evt-dossier-dossier_status_changed--notify.on_status_changed")
        with pytest.raises(AccessRefused):  # an exchange it neither owns nor listens to
            Exchange("notify.events", type="topic", durable=True, channel=connection.channel()).declare()
        with pytest.raises(AccessRefused):  # impersonating payment's events
            channel = connection.channel()
            channel.basic_publish(amqp.Message(b"{}"), exchange="payment.events", routing_key="payment_succeeded")
            channel.basic_qos(0, 1, False)  # a synchronous call surfaces the asynchronous channel error
