"""portal_shared.extensions.web and .health in a running container: limits, pools, probes, errors, untrusted input."""
import socket
import time

import eventlet
import pytest
import requests
from eventlet.event import Event

from portal_shared.extensions import health
from portal_shared.extensions.database import Database
from portal_shared.extensions.health import Monitoring
from portal_shared.extensions.web import callback, http
from portal_shared.untrusted import Malformed, check_text, json_object, query_fields
from tests.helpers import http_port

release = Event()


class EdgeService(health.HealthEndpoints):
    name = "edge_test"

    db = Database(migrations="dossier:migrations", relay_events=False)
    monitoring = Monitoring()

    @http("GET", "/boom")
    def boom(self, request):
        raise RuntimeError("secret detail from deep inside")

    @http("POST", "/echo")
    def echo(self, request):
        return str(len(request.get_data()))

    @callback("POST", "/callbacks/slow")
    def slow(self, request):
        release.wait()
        return "done"


@pytest.fixture
def edge_config(shared_config):
    return {**shared_config, "WEB_SERVER_ADDRESS": "127.0.0.1:0", "CALLBACK_WORKERS": 2,
            "CALLBACK_QUEUE_SECONDS": 0.5, "HTTP_BODY_TIMEOUT_SECONDS": 1, "HTTP_HEADER_TIMEOUT_SECONDS": 1,
            "HTTP_MAX_BODY_BYTES": 1024, "READINESS_CHECK_SECONDS": 0.2, "max_workers": 2}


@pytest.fixture
def base(container_factory, edge_config):
    global release
    release = Event()
    container = container_factory(EdgeService, edge_config)
    container.start()
    yield f"http://127.0.0.1:{http_port(container)}", container
    if not release.ready():
        release.send()


def test_errors_never_carry_the_exception_text(base):
    url, _ = base
    answer = requests.get(f"{url}/boom", timeout=5)
    assert answer.status_code == 500 and answer.json() == {"error": "internal error"}
    assert "secret" not in answer.text


def test_bodies_are_limited_and_read_before_the_worker(base):
    url, _ = base
    assert requests.post(f"{url}/echo", data=b"x" * 1024, timeout=5).text == "1024"
    too_big = requests.post(f"{url}/echo", data=b"x" * 1025, timeout=5)
    assert too_big.status_code == 413 and "1024" in too_big.json()["error"]
    assert requests.post(f"{url}/echo", data=iter([b"x" * 600, b"x" * 600]), timeout=5).status_code == 413  # chunked
    assert requests.post(f"{url}/echo", data=iter([b"x" * 600]), timeout=5).text == "600"


def test_a_slow_body_is_cut_by_the_total_deadline(base):
    url, _ = base
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)
    started = time.monotonic()
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    answer = b""
    for _ in range(20):  # a byte every 0.2 s never lets a per-read timeout fire
        try:
            sock.sendall(b"x")
        except OSError:
            break
        eventlet.sleep(0.2)
        sock.setblocking(False)
        try:
            answer += sock.recv(1000)
        except (BlockingIOError, OSError):
            pass
        sock.setblocking(True)
        if answer:
            break
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 3
    sock.close()


def test_callbacks_have_a_bounded_pool_of_their_own(base):
    url, container = base
    stuck = [eventlet.spawn(requests.post, f"{url}/callbacks/slow", timeout=10) for _ in range(2)]
    eventlet.sleep(0.3)
    refused = requests.post(f"{url}/callbacks/slow", timeout=10)  # the pool (2) is full: 503 after 0.5 s
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    # max_workers is 2 too, yet the ordinary workers are all free
    assert requests.post(f"{url}/echo", data=b"abc", timeout=2).text == "3"
    assert requests.get(f"{url}/healthz", timeout=2).status_code == 200
    release.send()
    assert [answer.wait().text for answer in stuck] == ["done", "done"]


def test_readyz_answers_from_the_cached_check(base, monkeypatch):
    url, container = base
    calls = []
    original = health.Readiness.check
    monkeypatch.setattr(health.Readiness, "check", lambda self: calls.append(1) or original(self))
    answers = [requests.get(f"{url}/readyz", timeout=5) for _ in range(30)]
    assert all(answer.status_code == 200 and answer.json()["broker"] == "ok" for answer in answers)
    assert len(calls) <= 2 + 10  # the timer's checks (every 0.2 s), not one per request
    monitoring = next(ext for ext in container.extensions if isinstance(ext, Monitoring))
    monitoring.interval = 3600
    eventlet.sleep(0.5)  # the watcher's last check done, it now sleeps an hour
    at, ready, details = monitoring.last_check
    monitoring.last_check = (at - 86400, ready, details)  # as if the watcher had died a day ago
    stale = requests.get(f"{url}/readyz", timeout=5)
    assert stale.status_code == 503 and "stale" in stale.json()["check"]


@pytest.mark.parametrize("text", ["\ud800", "a\x00b", "x" * 5000])
def test_untrusted_text_is_refused(text):
    with pytest.raises(Malformed):
        check_text(text)


def test_untrusted_bodies():
    assert json_object(b'{"a": "b", "n": 1}') == {"a": "b", "n": 1}
    for body in (b"\xff", b'{"a": "\\ud800"}', b'{"a": "\\u0000"}', b'{"a": {"b": 1}}', b"[1]", b"[" * 5000,
                 b"nope"):
        with pytest.raises(Malformed):
            json_object(body)
    assert query_fields(b"a=1&b=%C3%A9") == {"a": "1", "b": "é"}
    for query in (b"a=%ff", b"a=1&a=2", b"a=%00", "a=é".encode()):
        with pytest.raises(Malformed):
            query_fields(query)


@pytest.mark.parametrize("line, logged", [
    ("GET /callbacks/vnpay/ipn?vnp_TxnRef=P1&vnp_SecureHash=ab HTTP/1.1", "GET /callbacks/vnpay/ipn HTTP/1.1"),
    ("GET /healthz HTTP/1.1", "GET /healthz HTTP/1.1"),
    ("GET /x?a=1 b=2 HTTP/1.0", "GET /x HTTP/1.0"),
    ("GET /x?query", "GET /x"),
])
def test_access_lines_name_the_path_and_never_the_query(line, logged):
    from portal_shared.extensions.web import without_query

    assert without_query(line) == logged


@pytest.mark.parametrize("config, workers", [
    ({}, 4),                                                       # the defaults: 4 of 8 connections
    ({"CALLBACK_WORKERS": 16}, 4),                                 # capped: 4 of the 8 stay with the workers
    ({"CALLBACK_WORKERS": 8, "DB_POOL_SIZE": 12}, 8),              # payment's defaults
    ({"CALLBACK_WORKERS": "16", "DB_POOL_SIZE": "8", "DB_POOL_MAX_OVERFLOW": "20"}, 16),
    ({"CALLBACK_WORKERS": 4, "DB_POOL_SIZE": 2}, 1),
])
def test_callbacks_never_hold_every_database_connection(config, workers):
    from portal_shared.extensions.web import callback_workers

    assert callback_workers(config) == workers
