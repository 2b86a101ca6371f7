"""Caller tokens (portal_shared.auth) and the shared RPC entrypoint (portal_shared.extensions.rpc)."""
import time

import jwt
import pytest
from nameko.exceptions import RemoteError

from portal_shared.auth import AuthSettings, make_token, verify
from portal_shared.errors import Unauthorized
from portal_shared.extensions.auth import CallerIdentity
from portal_shared.extensions.rpc import AuthenticatedRpc, rpc
from tests.helpers import rpc_proxy

SETTINGS = AuthSettings(secret="unit-test-secret-0123456789abcdef0123")


def test_a_good_token_gives_the_caller():
    token = make_token(SETTINGS.secret, "can-bo-1", ["officer"], ["STP-HN"])
    caller = verify(f"Bearer {token}", SETTINGS)
    assert caller.subject == "can-bo-1" and caller.has("officer") and caller.serves("STP-HN")
    assert not caller.serves("CA-HN") and not caller.has("finance")


def test_a_token_verified_once_still_expires_and_still_needs_its_own_secret():
    token = make_token(SETTINGS.secret, "can-bo-2", ["officer"], ["STP-HN"], ttl_seconds=2)
    assert verify(f"Bearer {token}", SETTINGS).subject == "can-bo-2"
    assert verify(f"Bearer {token}", SETTINGS).subject == "can-bo-2"  # the second time from the cache
    rotated = AuthSettings(secret="another-unit-test-secret-0123456789abcdef")
    with pytest.raises(Unauthorized, match="signature"):
        verify(f"Bearer {token}", rotated)
    time.sleep(2.1)
    with pytest.raises(Unauthorized, match="expired"):
        verify(f"Bearer {token}", SETTINGS)


def test_a_refused_token_is_refused_every_time():
    token = make_token(SETTINGS.secret, "x", ["officer"])
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            verify(f"Bearer {tampered}", SETTINGS)


@pytest.mark.parametrize("claims, reason", [
    ({"sub": "x", "roles": ["citizen"]}, "id_number"),
    ({"sub": "x", "roles": ["citizen"], "id_number": "００１０９９０１２３４５"}, "id_number"),
    ({"sub": "x", "roles": ["citizen"], "id_number": "001099012345\n"}, "id_number"),
    ({"sub": "x", "roles": ["root"]}, "roles"),
    ({"sub": "x", "roles": "officer"}, "roles"),
    ({"sub": "", "roles": ["officer"]}, "sub"),
    ({"roles": ["officer"]}, "sub"),
])
def test_bad_claims_are_unauthorized(claims, reason):
    now = int(time.time())
    token = jwt.encode({"iss": "portal-auth", "aud": "portal-backend", "exp": now + 60, **claims}, SETTINGS.secret,
                       algorithm="HS256")
    with pytest.raises(Unauthorized) as refused:
        verify(f"Bearer {token}", SETTINGS)
    assert reason in str(refused.value)


def test_unsigned_and_other_algorithm_tokens_are_refused():
    claims = {"sub": "x", "roles": ["finance"], "iss": "portal-auth", "aud": "portal-backend",
              "exp": int(time.time()) + 60}
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(Unauthorized):
        verify(f"Bearer {unsigned}", SETTINGS)
    other = jwt.encode(claims, SETTINGS.secret, algorithm="HS512")
    with pytest.raises(Unauthorized):
        verify(f"Bearer {other}", SETTINGS)
    wrong_audience = jwt.encode({**claims, "aud": "elsewhere"}, SETTINGS.secret, algorithm="HS256")
    with pytest.raises(Unauthorized):
        verify(f"Bearer {wrong_audience}", SETTINGS)


def test_every_rpc_of_every_service_goes_through_the_authenticated_entrypoint():
    from dossier.service import DossierService
    from notify.service import NotifyService
    from payment.service import PaymentService
    from nameko.rpc import Rpc

    for service in (DossierService, PaymentService, NotifyService):
        rpcs = [entrypoint for name in dir(service)
                for entrypoint in getattr(getattr(service, name), "nameko_entrypoints", ())
                if isinstance(entrypoint, Rpc)]
        assert rpcs, service
        assert all(isinstance(entrypoint, AuthenticatedRpc) for entrypoint in rpcs), service


class Exploding:
    name = "exploding"
    caller = CallerIdentity()

    @rpc
    def boom(self):
        self.caller.require()
        raise RuntimeError("(psycopg2.errors.X) INSERT INTO dossiers (applicant_address) VALUES ('12 Tràng Tiền')")


def test_an_unexpected_error_reaches_the_caller_as_a_generic_error_with_a_correlation_id(
        container_factory, rabbit_config):
    container_factory(Exploding, rabbit_config).start()
    with rpc_proxy(rabbit_config) as proxy:
        with pytest.raises(RemoteError) as error:
            proxy.exploding.boom()
    assert error.value.exc_type == "InternalError"
    assert "correlation id exploding.boom." in error.value.value
    assert "INSERT" not in error.value.value and "Tràng" not in error.value.value


class Echo:
    name = "echo"
    caller = CallerIdentity()

    @rpc
    def echo(self, text):
        self.caller.require()
        return text


def test_a_reply_is_transient_and_still_reaches_the_caller(container_factory, rabbit_config):
    """No disk write at the broker for a reply (``portal_shared.extensions.rpc``); the call still works."""
    import uuid

    from kombu import Connection, Exchange, Queue

    from tests.helpers import bearer_token

    container_factory(Echo, rabbit_config).start()
    replies = Queue(f"test-replies-{uuid.uuid4().hex}", exchange=Exchange("nameko-rpc", type="topic", durable=True),
                    routing_key=f"reply-{uuid.uuid4().hex}", auto_delete=True)
    received = []
    with Connection(rabbit_config["AMQP_URI"]) as connection:
        with connection.Consumer(replies, callbacks=[lambda body, message: received.append((body, message))],
                                 accept=["json"]):
            connection.Producer().publish(
                {"args": ["xin chào"], "kwargs": {}}, exchange="nameko-rpc", routing_key="echo.echo",
                reply_to=replies.routing_key, correlation_id="c-1", serializer="json",
                headers={"nameko.authorization": bearer_token("officer")})
            connection.drain_events(timeout=10)
    (body, message), = received
    assert body == {"result": "xin chào", "error": None}
    assert message.properties["correlation_id"] == "c-1"
    assert message.delivery_info["routing_key"] == replies.routing_key
    assert message.properties["delivery_mode"] == 1  # transient (Nameko's own replies are persistent: 2)
    with rpc_proxy(rabbit_config) as proxy:
        assert proxy.echo.echo("lần hai") == "lần hai"
