"""The sandbox's callbacks (IPNs, receipts): due order, retries with back-off, connections kept alive."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sandbox.callbacks import deliver
from sandbox.store import Store


class Receiver(ThreadingHTTPServer):
    """Answers 500 to the first ``failures`` callbacks, then 200; counts requests and TCP connections."""

    daemon_threads = True

    def __init__(self, failures=0):
        self.failures, self.bodies, self.connections = failures, [], 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a merchant's server answers

            def setup(self):
                super().setup()
                with receiver.lock:
                    receiver.connections += 1

            def do_POST(self):  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.bodies.append(body)
                    status = 500 if receiver.failures > 0 else 200
                    receiver.failures -= 1
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/receipt"


@pytest.fixture
def receiver():
    servers = []

    def start(failures=0):
        servers.append(Receiver(failures))
        return servers[-1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def ok(response):
    return response.status_code < 500


def test_a_refused_callback_is_retried_with_back_off_until_accepted(receiver):
    server, store = receiver(failures=2), Store()
    started = time.monotonic()
    assert deliver(store, "esms_receipt", "POST", server.url, {"SMSID": "1"}, ok, attempts=4, retry_seconds=0.1,
                   as_json=True) is False  # the first attempt ran at once, and was refused
    wait_for(lambda: len(server.bodies) == 3)
    assert time.monotonic() - started >= 0.1 + 0.2  # waited 0.1 s, then 0.2 s
    time.sleep(0.5)
    assert [c["status"] for c in store.callbacks] == [500, 500, 200]  # accepted: not sent again


def test_retries_stop_after_the_last_attempt(receiver):
    server, store = receiver(failures=10), Store()
    deliver(store, "esms_receipt", "POST", server.url, {"SMSID": "1"}, ok, attempts=3, retry_seconds=0.05,
            as_json=True)
    wait_for(lambda: len(server.bodies) == 3)
    time.sleep(0.5)
    assert len(server.bodies) == 3


def test_delayed_callbacks_go_out_in_due_order_over_kept_alive_connections(receiver):
    server, store = receiver(), Store()
    for number in range(40):
        deliver(store, "esms_receipt", "POST", server.url, {"SMSID": str(number)}, ok, as_json=True,
                delay=1.0 if number % 2 else 0.05)
    wait_for(lambda: len(server.bodies) == 40)
    order = [int(body["SMSID"]) for body in server.bodies]
    assert {n % 2 for n in order[:10]} == {0}  # the 50 ms ones first
    assert server.connections <= 8  # one kept-alive connection per sending thread, not one per callback
