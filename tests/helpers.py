"""Helpers used across the suites: waiting, event collection, RPC clients."""
import socket
import time

import eventlet
from nameko.events import event_handler
from nameko.standalone.rpc import ClusterRpcProxy


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


def rpc_proxy(config):
    """A cluster RPC proxy for one green thread (never share one between threads)."""
    return ClusterRpcProxy(config, timeout=30)


def http_port(container):
    """The port a container's nameko web server listens on (configured as port 0)."""
    from nameko.web.server import WebServer

    server = next(ext for ext in container.subextensions if isinstance(ext, WebServer))
    return server._sock.getsockname()[1]


def free_port():
    """A TCP port free on 127.0.0.1 right now (for a server that needs a concrete port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
