"""The services' HTTP listener: deadlines and limits before a worker is taken.

Nameko's ``WebServer`` (eventlet.wsgi) has no read deadline and no body limit,
and its handlers read the body inside the worker, so a client sending its
request slowly holds one of the container's workers for as long as it likes.
``GuardedWebServer`` closes that gap in the connection's own green thread,
before any routing or worker:

- the request line and headers must arrive within ``HTTP_HEADER_TIMEOUT_SECONDS``
  (one total deadline, not a per-``recv`` timeout a slow client can reset);
- a ``Content-Length`` above ``HTTP_MAX_BODY_BYTES`` is answered 413 at once,
  without reading the rest; a chunked body is read up to the limit only;
- the body must arrive within ``HTTP_BODY_TIMEOUT_SECONDS`` (else 408);
- the body is then handed to the application from memory, so a worker never
  waits on the network;
- at most ``HTTP_MAX_CONNECTIONS`` connections are served at once.

Entrypoints (every HTTP route of a service must use these, as they share the
one listener):

- ``http``: a normal Nameko worker; an unexpected error is a bare 500 without
  the exception's text;
- ``callback``: public provider callbacks, run in a bounded pool of their own
  (``CALLBACK_WORKERS``, not counted in ``max_workers``, and never more than the
  process's database connections less four), so they can neither starve RPC,
  event handlers and timers nor be starved by them; a request
  that finds the pool full for ``CALLBACK_QUEUE_SECONDS`` gets 503;
- ``probe``: ``/healthz``, ``/readyz``, ``/metrics``, answered by the web
  server itself without a worker.
"""
import io
import json
from functools import partial

import eventlet
from eventlet.event import Event
from eventlet.greenpool import GreenPool
from eventlet.semaphore import Semaphore
from nameko.containers import WorkerContext
from nameko.exceptions import BadRequest, ContainerBeingKilled
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import HttpOnlyProtocol, WebServer
from werkzeug.wrappers import Response

from portal_shared.config import get_float, get_int
from portal_shared.db import pool_settings
from portal_shared.extensions.entrypoints import SignatureCheckedOnce
from portal_shared.logs import get_logger

log = get_logger(__name__)

DEFAULTS = {
    "HTTP_HEADER_TIMEOUT_SECONDS": 10.0,
    "HTTP_BODY_TIMEOUT_SECONDS": 10.0,
    "HTTP_MAX_BODY_BYTES": 64 * 1024,
    "HTTP_MAX_CONNECTIONS": 1000,
    "CALLBACK_WORKERS": 4,
    "CALLBACK_QUEUE_SECONDS": 5.0,
}


class _Deadline(BaseException):
    """Raised into a connection's green thread when its header deadline passes.

    A ``BaseException`` so that no ``except Exception`` / ``except OSError`` on
    the way (eventlet's request-line reader has one) can swallow it.
    """


def _canned(status, reason, message):
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


def without_query(requestline):
    """The access log's request line without its query string: a callback's query is the gateway's signed
    fields (bank numbers, amounts), which the use case logs by name where they matter; masking them on
    every access line was a few per cent of payment's CPU."""
    head, question, tail = requestline.partition("?")
    if not question:
        return requestline
    _, space, version = tail.rpartition(" ")
    return f"{head} {version}" if space else head


class DeadlineProtocol(HttpOnlyProtocol):
    """eventlet's protocol with a header deadline and the body read up front (see the module docstring)."""

    _header_timer = None

    def handle_one_request(self):
        self.raw_requestline = ""
        self._header_timer = eventlet.Timeout(self.server.header_timeout, _Deadline())
        try:
            super().handle_one_request()
        except _Deadline:
            self.close_connection = 1
            if getattr(self, "raw_requestline", None):  # a request had begun: say why it ends
                self._write_quietly(_canned(408, "Request Timeout", "request headers too slow"))
                log.info("http_header_deadline", path=None)
            # else: an idle keep-alive connection, closed silently
        finally:
            self._header_timer.cancel()

    def handle_one_response(self):
        self._header_timer.cancel()
        self.requestline = without_query(self.requestline)
        refusal = self._read_body()
        if refusal is not None:
            self.close_connection = 1
            self._write_quietly(refusal)
            return
        super().handle_one_response()

    def _write_quietly(self, data):
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            pass

    def _read_body(self):
        """Read the whole body within the deadline into memory; a canned refusal, or None when all is well."""
        environ = self.environ
        stream = environ["eventlet.input"]
        limit = self.server.max_body_bytes
        declared = stream.content_length
        if declared is not None and declared > limit:
            log.info("http_body_too_large", path=environ.get("PATH_INFO"), declared=declared)
            return _canned(413, "Payload Too Large", f"request body above {limit} bytes")
        if not stream.chunked_input and not declared:
            body = b""
        else:
            try:
                with eventlet.Timeout(self.server.body_timeout, _Deadline()):
                    body = stream.read(limit + 1)
            except _Deadline:
                log.info("http_body_deadline", path=environ.get("PATH_INFO"))
                return _canned(408, "Request Timeout", "request body too slow")
            except ValueError:  # eventlet's ChunkReadError: a broken chunked encoding
                return _canned(400, "Bad Request", "malformed chunked body")
            except OSError:
                self.close_connection = 1
                return b""
            if len(body) > limit:
                log.info("http_body_too_large", path=environ.get("PATH_INFO"), declared=None)
                return _canned(413, "Payload Too Large", f"request body above {limit} bytes")
            if declared is not None and len(body) < declared:  # the client closed early
                return _canned(400, "Bad Request", "request body shorter than Content-Length")
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        if stream.chunked_input:
            self.close_connection = 1  # nothing of a chunked body is left to discard safely
        return None


class GuardedWebServer(WebServer):
    """Nameko's web server with the deadlines, limits and connection cap above."""

    def setup(self):
        config = self.container.config
        self.header_timeout = get_float(config, "HTTP_HEADER_TIMEOUT_SECONDS", DEFAULTS["HTTP_HEADER_TIMEOUT_SECONDS"])
        self.body_timeout = get_float(config, "HTTP_BODY_TIMEOUT_SECONDS", DEFAULTS["HTTP_BODY_TIMEOUT_SECONDS"])
        self.max_body_bytes = get_int(config, "HTTP_MAX_BODY_BYTES", DEFAULTS["HTTP_MAX_BODY_BYTES"])
        self.max_connections = get_int(config, "HTTP_MAX_CONNECTIONS", DEFAULTS["HTTP_MAX_CONNECTIONS"])
        self._connections = Semaphore(self.max_connections)
        super().setup()

    def get_wsgi_server(self, sock, wsgi_app, protocol=DeadlineProtocol, debug=False):
        server = super().get_wsgi_server(sock, wsgi_app, protocol=protocol, debug=debug)
        server.socket_timeout = max(self.header_timeout, self.body_timeout)  # also bounds every single write
        server.header_timeout = self.header_timeout
        server.body_timeout = self.body_timeout
        server.max_body_bytes = self.max_body_bytes
        return server

    def run(self):
        while self._is_accepting:
            sock, addr = self._sock.accept()
            if not self._connections.acquire(blocking=False):
                log.warning("http_connection_refused", reason="HTTP_MAX_CONNECTIONS reached")
                sock.close()
                continue
            sock.settimeout(self._serv.socket_timeout)
            self.container.spawn_managed_thread(partial(self._serve, sock, addr))

    def _serve(self, sock, addr):
        try:
            self.process_request(sock, addr)
        finally:
            self._connections.release()


class SafeHttpRequestHandler(SignatureCheckedOnce, HttpRequestHandler):
    """``@http`` on the guarded server; errors never carry an exception's text."""

    server = GuardedWebServer()

    def response_from_exception(self, exc):
        if isinstance(exc, self.expected_exceptions) or isinstance(exc, BadRequest):
            return Response(json.dumps({"error": "bad request"}), status=400, mimetype="application/json")
        log.error("http_entrypoint_failed", entrypoint=self.method_name, error_type=type(exc).__name__)
        return Response(json.dumps({"error": "internal error"}), status=500, mimetype="application/json")


class CallbackHandler(SafeHttpRequestHandler):
    """A public provider callback, run in the container's callback pool (see the module docstring)."""

    def setup(self):
        super().setup()
        config = self.container.config
        self.queue_seconds = get_float(config, "CALLBACK_QUEUE_SECONDS", DEFAULTS["CALLBACK_QUEUE_SECONDS"])
        self.pool = _callback_pool(self.container)

    def stop(self):
        super().stop()
        self.pool.pool.waitall()  # like the container does for its own workers: let running callbacks finish

    def handle_request(self, request):
        request.shallow = False
        if not self.pool.slots.acquire(timeout=self.queue_seconds):
            log.warning("callback_pool_full", entrypoint=self.method_name)
            return Response(json.dumps({"error": "busy, retry later"}), status=503, mimetype="application/json",
                            headers={"Retry-After": "5"})
        try:
            args, kwargs = self.get_entrypoint_parameters(request)
            self.check_signature(args, kwargs)
            event = Event()
            self._spawn(args, kwargs, partial(self.handle_result, event))
            result = event.wait()
            return self.response_from_result(result)
        except Exception as exc:
            return self.response_from_exception(exc)
        finally:
            self.pool.slots.release()

    def _spawn(self, args, kwargs, handle_result):
        """``ServiceContainer.spawn_worker`` with the callback pool instead of the container's own."""
        container = self.container
        if container._being_killed:
            raise ContainerBeingKilled()
        worker_ctx = WorkerContext(container, container.service_cls(), self, args, kwargs, data={})
        thread = self.pool.pool.spawn(container._run_worker, worker_ctx, handle_result)
        thread.link(container._handle_worker_thread_exited, worker_ctx)
        container._worker_threads[worker_ctx] = thread  # killed with the container's workers
        return worker_ctx


class _CallbackPool:
    def __init__(self, size):
        self.size = size
        self.pool = GreenPool(size)
        self.slots = Semaphore(size)


# Database connections the callback pool always leaves to RPC, event handlers, timers and the outbox
# relay: callbacks stuck on a row lock each hold one, and must not take them all.
CONNECTIONS_KEPT_FROM_CALLBACKS = 4


def callback_workers(config):
    """``CALLBACK_WORKERS``, capped so that the callbacks can hold at most the process's database
    connections (``DB_POOL_SIZE`` + ``DB_POOL_MAX_OVERFLOW``) less ``CONNECTIONS_KEPT_FROM_CALLBACKS``."""
    wanted = get_int(config, "CALLBACK_WORKERS", DEFAULTS["CALLBACK_WORKERS"])
    connections = sum(pool_settings(config).values())
    allowed = max(1, connections - CONNECTIONS_KEPT_FROM_CALLBACKS)
    if wanted > allowed:
        log.warning("callback_workers_capped", wanted=wanted, allowed=allowed,
                    reason=f"{connections} database connections, {CONNECTIONS_KEPT_FROM_CALLBACKS} kept for "
                           "RPC, events and timers")
    return min(wanted, allowed)


def _callback_pool(container):
    pool = getattr(container, "_portal_callback_pool", None)
    if pool is None:
        pool = _CallbackPool(callback_workers(container.config))
        container._portal_callback_pool = pool
    return pool


class ProbeHandler(SafeHttpRequestHandler):
    """An operational endpoint answered by the server's green thread: ``responder(request) -> Response``.

    The responder is the decorated method, called unbound with ``self`` = the
    service's ``Monitoring`` provider-side object found by ``locate``.
    """

    def __init__(self, method, url, locate, **kwargs):
        self.locate = locate
        super().__init__(method, url, **kwargs)

    def handle_request(self, request):
        request.shallow = False
        try:
            function = getattr(self.container.service_cls, self.method_name)
            return function(self.locate(self.container), request)
        except Exception as exc:
            return self.response_from_exception(exc)


http = SafeHttpRequestHandler.decorator
callback = CallbackHandler.decorator
probe = ProbeHandler.decorator
