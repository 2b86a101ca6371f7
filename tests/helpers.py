"""Helpers used across the suites: waiting, event collection, RPC clients with caller tokens.

Every RPC needs a caller token (CONTRACT section 5). In a test, one line:

    with rpc_proxy(config) as rpc:                          # staff: officer + finance + operator, all sample agencies
    with rpc_proxy(config, role="citizen", id_number="001099012345") as rpc:
    with rpc_proxy(config, role="officer", agencies=["CA-HN"]) as rpc:
    with rpc_proxy(config, token=None) as rpc:              # no token at all
    headers = {"authorization": bearer_token(role="finance")}   # for a proxy made elsewhere

The services and the tokens use ``AUTH_JWT_SECRET`` from the environment; the
root ``conftest.py`` sets it to ``TEST_JWT_SECRET`` for the whole session (also
inherited by the e2e processes), so service configs need nothing extra.
"""
import os
import random
import socket
import time

import eventlet
from nameko.events import event_handler
from nameko.standalone.rpc import ClusterRpcProxy

from portal_shared.auth import bearer, make_token

TEST_JWT_SECRET = "test-only-jwt-secret-0123456789abcdef0123456789"
# The agencies of the sample procedure catalogue (services/dossier/dossier/procedures.yml).
SAMPLE_AGENCIES = ("STP-HN", "CA-HN", "SGTVT-HN", "UBND-PX-HN")
STAFF = ("officer", "finance", "operator")
_DEFAULT = object()


def wait_for(predicate, timeout=10.0, interval=0.05, message="condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        eventlet.sleep(interval)


def make_collector(source_service, event_type, name="event_collector"):
    """A service class collecting ``event_type`` events from ``source_service`` into ``.received``."""
    received = []

    class Collector:
        pass

    Collector.name = name

    @event_handler(source_service, event_type)
    def collect(self, payload):
        received.append(payload)

    Collector.collect = collect
    Collector.received = received
    return Collector


def bearer_token(role=STAFF, sub=None, agencies=_DEFAULT, id_number=None, ttl_seconds=600, secret=None,
                 issuer=None):
    """``"Bearer <jwt>"`` for a caller with ``role`` (a role name or a list of them).

    ``agencies`` defaults to every sample agency for officer/finance roles, none
    otherwise; a citizen needs ``id_number``.
    """
    roles = [role] if isinstance(role, str) else list(role)
    if agencies is _DEFAULT:
        agencies = SAMPLE_AGENCIES if {"officer", "finance"} & set(roles) else ()
    secret = secret or os.environ.get("AUTH_JWT_SECRET") or TEST_JWT_SECRET
    issuer = issuer or os.environ.get("AUTH_JWT_ISSUER") or "portal-auth"
    token = make_token(secret, sub or f"test-{'-'.join(roles)}", roles, agencies, id_number, issuer, ttl_seconds)
    return bearer(token)


def rpc_proxy(config, role=STAFF, token=_DEFAULT, **claims):
    """A cluster RPC proxy for one green thread (never share one between threads), calling as ``role``.

    ``claims`` go to ``bearer_token`` (sub, agencies, id_number, ttl_seconds, secret);
    ``token`` gives the ``authorization`` value verbatim (``None``: no token).
    """
    if token is _DEFAULT:
        token = bearer_token(role, **claims)
    context = {} if token is None else {"authorization": token}
    return ClusterRpcProxy(config, context_data=context, timeout=30)


def http_port(container):
    """The port a container's nameko web server listens on (configured as port 0)."""
    from nameko.web.server import WebServer

    server = next(ext for ext in container.subextensions if isinstance(ext, WebServer))
    return server._sock.getsockname()[1]


# Ports handed out by ``free_port``: below Linux's ephemeral range (32768-60999), so an outgoing
# connection's local port can never take one between ``free_port`` and the server's bind, and
# never the same one twice in a run.
_PORT_RANGE = (20000, 32000)
_handed_out = set()
_ports = random.SystemRandom()  # not the global generator, which Hypothesis seeds


def free_port():
    """A TCP port free on 127.0.0.1 right now (for a server that needs a concrete port)."""
    for _ in range(1000):
        port = _ports.randint(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port found in %d-%d" % _PORT_RANGE)
