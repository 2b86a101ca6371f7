"""``/healthz``, ``/readyz`` and ``/metrics`` for every service.

A service class inherits ``HealthEndpoints`` and declares
``monitoring = Monitoring()`` next to its ``Database``: the provider counts and
times every worker for Prometheus and checks that the database and the broker
answer.
"""
import json
import time

from kombu import Connection
from nameko.extensions import DependencyProvider
from nameko.web.handlers import http
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from werkzeug.wrappers import Response

from portal_shared.db import Database

WORKER_CALLS = Counter(
    "portal_worker_calls_total", "Worker calls by entrypoint and outcome", ["service", "entrypoint", "outcome"]
)
WORKER_SECONDS = Histogram("portal_worker_seconds", "Worker duration", ["service", "entrypoint"])
OUTBOX_PENDING = Gauge("portal_outbox_pending", "Committed events not yet confirmed by the broker", ["service"])


class Readiness:
    def __init__(self, provider):
        self._provider = provider

    def check(self):
        """Return ``(ready, details)`` after trying the database and the broker."""
        details = {}
        database = self._provider.database()
        try:
            database.ping()
            details["database"] = "ok"
        except Exception as exc:
            details["database"] = f"error: {type(exc).__name__}"
        try:
            with Connection(self._provider.container.config["AMQP_URI"], connect_timeout=3) as connection:
                connection.ensure_connection(max_retries=1)
            details["broker"] = "ok"
        except Exception as exc:
            details["broker"] = f"error: {type(exc).__name__}"
        return all(value == "ok" for value in details.values()), details

    def metrics(self):
        relay = self._provider.database().relay
        service = self._provider.container.service_name
        if relay is not None:
            try:
                OUTBOX_PENDING.labels(service).set(relay.pending_count())
            except Exception:
                pass
        return generate_latest()


class Monitoring(DependencyProvider):
    """Worker metrics and readiness checks."""

    def setup(self):
        self._started = {}

    def database(self):
        for extension in self.container.dependencies:
            if isinstance(extension, Database):
                return extension
        raise RuntimeError("Monitoring needs a Database dependency on the service")

    def get_dependency(self, worker_ctx):
        return Readiness(self)

    def worker_setup(self, worker_ctx):
        self._started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self._started.pop(worker_ctx, None)
        service, entrypoint = self.container.service_name, worker_ctx.entrypoint.method_name
        WORKER_CALLS.labels(service, entrypoint, "error" if exc_info else "ok").inc()
        if started is not None:
            WORKER_SECONDS.labels(service, entrypoint).observe(time.perf_counter() - started)


def json_response(payload, status=200):
    return Response(json.dumps(payload, ensure_ascii=False), status=status, mimetype="application/json")


class HealthEndpoints:
    """Mixin adding the three operational endpoints to a service class."""

    @http("GET", "/healthz")
    def healthz(self, request):
        return json_response({"status": "ok"})

    @http("GET", "/readyz")
    def readyz(self, request):
        ready, details = self.monitoring.check()
        return json_response({"status": "ready" if ready else "not ready", **details}, 200 if ready else 503)

    @http("GET", "/metrics")
    def metrics(self, request):
        return Response(self.monitoring.metrics(), status=200, mimetype=CONTENT_TYPE_LATEST.split(";")[0])
