"""The one HTTP stack of the fakes: werkzeug, as the sandbox's own server.

A fake is a werkzeug app, ``fake.app(request) -> Response``. The sandbox
mounts it in its URL map (``python -m sandbox``); a test serves it alone on a
free port with ``fake.start()`` and ``fake.stop()``.
"""
import json
import threading
import time

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


class HangUpHandler(WSGIRequestHandler):
    """Closes the connection of a request left without an answer, rather than wait on it for another request."""

    def connection_dropped(self, error, environ=None):
        self.close_connection = True


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
        self._server = make_server(self.host, self.port, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_address[1]
        self.base_url = f"http://{self.host}:{self.port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
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
