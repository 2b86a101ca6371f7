"""``/healthz``, ``/readyz`` and ``/metrics`` for every service.

A service class inherits ``HealthEndpoints`` and declares
``monitoring = Monitoring()`` next to its ``Database``: the provider counts and
times every worker for Prometheus and checks that the database and the broker
answer. The check runs in a thread of its own every
``READINESS_CHECK_SECONDS``; ``/readyz`` answers from its last result (never a
new broker connection per request). The three endpoints are answered by the
web server itself (``portal_shared.extensions.web.probe``), so they answer even when every
worker is busy; they belong to the service's own address and are never routed
to the internet (``infra/nginx``).
"""
import json
import time

import eventlet
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from werkzeug.wrappers import Response

from portal_shared.config import get_float
from portal_shared.extensions.background import BackgroundLoop
from portal_shared.extensions.database import Database
from portal_shared.extensions.web import probe
from portal_shared.logs import get_logger

log = get_logger(__name__)

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


class Monitoring(BackgroundLoop):
    """Worker metrics and the cached readiness check (re-run by the background loop)."""

    thread_name = "readiness_check"

    def setup(self):
        super().setup()
        self._started = {}
        self.interval = get_float(self.container.config, "READINESS_CHECK_SECONDS", 5.0)
        self.last_check = None  # (monotonic time, ready, details)

    def start(self):
        self._check()  # a first answer before the server takes requests
        super().start()

    def loop(self):
        while True:
            eventlet.sleep(self.interval)
            self._check()

    def _check(self):
        try:
            ready, details = Readiness(self).check()
        except Exception as exc:  # never let the watcher die: a dead watcher would read as stale
            ready, details = False, {"check": f"error: {type(exc).__name__}"}
        if self.last_check is None or self.last_check[1] != ready:
            log.info("readiness_changed", ready=ready, **details)
        self.last_check = (time.monotonic(), ready, details)

    def cached_readiness(self):
        """``(ready, details)`` from the last check; not ready before the first or when it is stale."""
        if self.last_check is None:
            return False, {"check": "not run yet"}
        at, ready, details = self.last_check
        age = time.monotonic() - at
        if age > max(3 * self.interval, 30.0):
            return False, {**details, "check": f"stale ({age:.0f} s old)"}
        return ready, details

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


def _monitoring_of(container):
    for extension in container.dependencies:
        if isinstance(extension, Monitoring):
            return extension
    raise RuntimeError("HealthEndpoints needs a Monitoring dependency on the service")


class HealthEndpoints:
    """Mixin adding the three operational endpoints to a service class.

    Each method runs in the web server's green thread with ``self`` = the
    service's ``Monitoring`` provider (``portal_shared.extensions.web.ProbeHandler``).
    """

    @probe("GET", "/healthz", locate=_monitoring_of)
    def healthz(self, request):
        return json_response({"status": "ok"})

    @probe("GET", "/readyz", locate=_monitoring_of)
    def readyz(self, request):
        ready, details = self.cached_readiness()
        return json_response({"status": "ready" if ready else "not ready", **details}, 200 if ready else 503)

    @probe("GET", "/metrics", locate=_monitoring_of)
    def metrics(self, request):
        return Response(Readiness(self).metrics(), status=200, mimetype=CONTENT_TYPE_LATEST.split(";")[0])
