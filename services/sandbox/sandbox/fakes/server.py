"""The one HTTP stack of the fakes: werkzeug, as the sandbox's own server.

A fake is a werkzeug app, ``fake.app(request) -> Response``. The sandbox
mounts it in its URL map (``python -m sandbox``); a test serves it alone on a
free port with ``fake.start()`` and ``fake.stop()``.
"""
import io
import json
import socket
import threading
import time
import traceback

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class HangUp(ConnectionAbortedError):
    """Leave the request without an answer: werkzeug's server drops a connection whose app raises this."""


def hang_up(seconds):
    """Keep the caller waiting ``seconds`` (longer than its timeout, as a test sets it), then hang up."""
    time.sleep(seconds)
    raise HangUp("no answer (scripted)")


def json_response(document, status=200):
    return Response(json.dumps(document, ensure_ascii=False), status=status,
                    mimetype="application/json")


KEEP_ALIVE_BODY_LIMIT = 1 << 20  # a request body read whole beforehand (fakes get small JSON and forms)


class HangUpHandler(WSGIRequestHandler):
    """Keeps HTTP/1.1 connections alive, as the providers' servers do; closes the connection of a request
    left without an answer, rather than wait on it for another request.

    werkzeug's server answers every request with ``Connection: close`` (``http.server`` cannot skip the
    part of a body an app did not read, so werkzeug drains the socket after each answer). Here the body
    (``Content-Length``, at most ``KEEP_ALIVE_BODY_LIMIT``) is read before the app runs and the answer
    goes out whole with its ``Content-Length``, so the next request line is always where the stream
    stands and the connection stays open: a client with a keep-alive pool (notify's SMS clients) pays
    one connection, not one per message. A chunked or larger body, ``Expect``, HTTP/1.0 or
    ``Connection: close`` from the client go through werkzeug's own handling, which closes. An idle
    connection is closed after ``timeout`` seconds.
    """

    timeout = 60

    def setup(self):
        super().setup()
        connections = getattr(self.server, "open_connections", None)
        if connections is not None:
            connections.add(self.connection)

    def finish(self):
        connections = getattr(self.server, "open_connections", None)
        if connections is not None:
            connections.discard(self.connection)
        super().finish()

    def _keeps_alive(self):
        """Whether this request's connection can serve another: HTTP/1.1, not ``Connection: close``, a body
        of a known, small length (read whole before the app runs)."""
        if self.request_version != "HTTP/1.1" or "close" in self.headers.get("Connection", "").lower():
            return False
        if self.headers.get("Transfer-Encoding") or self.headers.get("Expect"):
            return False
        try:
            return 0 <= int(self.headers.get("Content-Length") or 0) <= KEEP_ALIVE_BODY_LIMIT
        except ValueError:
            return False

    def run_wsgi(self):
        """The app's whole answer with its ``Content-Length``, the connection left open; werkzeug's own
        ``run_wsgi`` (which closes it) for any request that cannot keep it."""
        if not self._keeps_alive():
            return super().run_wsgi()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) != length:  # the client went away mid-body
            self.close_connection = True
            return
        environ = self.environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        answer = []

        def start_response(status, headers, exc_info=None):
            if exc_info is not None and answer:
                raise exc_info[1].with_traceback(exc_info[2])
            answer[:] = [status, headers]
            return chunks.append

        chunks = []
        try:
            result = self.server.app(environ, start_response)
            try:
                chunks.extend(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        except (ConnectionError, socket.timeout) as error:  # HangUp: no answer, the connection is dropped
            self.connection_dropped(error, environ)
            return
        except Exception:
            self.log("error", "Error on request %s %s:\n%s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                     traceback.format_exc())
            answer = ["500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")]]
            chunks, self.close_connection = [b"internal server error"], True
        status, headers = answer
        code, _, reason = status.partition(" ")
        payload = b"".join(chunks)
        self.send_response(int(code), reason)
        for key, value in headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if environ["REQUEST_METHOD"] != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def connection_dropped(self, error, environ=None):
        self.close_connection = True


class OpenConnections:
    """The connections a server holds open (kept alive between requests), to close when it stops: a
    stopped fake must not go on answering on a connection a client kept."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open = set()

    def add(self, connection):
        with self._lock:
            self._open.add(connection)

    def discard(self, connection):
        with self._lock:
            self._open.discard(connection)

    def close_all(self):
        with self._lock:
            connections, self._open = list(self._open), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed by the client meanwhile
                pass


def make_keep_alive_server(host, port, app, request_handler=HangUpHandler):
    """werkzeug's threaded server with ``HangUpHandler``'s keep-alive; ``server.open_connections.close_all()``
    after ``shutdown()`` ends the connections clients still hold."""
    server = make_server(host, port, app, threaded=True, request_handler=request_handler)
    server.open_connections = OpenConnections()
    return server


class _QuietHandler(HangUpHandler):
    def log_request(self, *args, **kwargs):
        pass


class FakeServer:
    """Serves ``self.app`` at ``base_url`` (127.0.0.1, a free port unless told) in a thread of its own."""

    def __init__(self, host="127.0.0.1", port=0):
        self.host, self.port = host, port
        self.base_url = None  # set by start(); the sandbox sets its own public URL instead
        self.lock = threading.RLock()
        self._server = None

    def app(self, request):
        raise NotImplementedError

    def start(self):
        self._server = make_keep_alive_server(self.host, self.port, self._wsgi, request_handler=_QuietHandler)
        self.port = self._server.server_address[1]
        self.base_url = f"http://{self.host}:{self.port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.open_connections.close_all()
            self._server = None

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        try:
            response = self.app(request)  # looked up per request: a test may wrap it
        except HangUp:
            raise
        except Exception as exc:  # a fake must explain itself, not hang up
            response = Response(f"fake error: {exc!r}", status=500)
        return response(environ, start_response)
