"""The fakes' HTTP server keeps connections alive, as the providers' servers do (sandbox.fakes.server)."""
import json
import socket

import pytest
import urllib3

from sandbox.fakes.server import FakeServer, HangUp, json_response


class Echo(FakeServer):
    """Answers the body it was sent; ``/hang-up`` leaves the request without an answer."""

    def app(self, request):
        if request.path == "/hang-up":
            raise HangUp("scripted")
        if request.path == "/unread":
            return json_response({"read": False})  # the body is left unread by the app
        return json_response({"got": request.get_data(as_text=True)})


@pytest.fixture
def echo():
    server = Echo().start()
    yield server
    server.stop()


def pool_for(server):
    return urllib3.HTTPConnectionPool("127.0.0.1", server.port, maxsize=1, retries=False, timeout=5)


def test_requests_with_bodies_share_one_connection(echo):
    pool = pool_for(echo)
    answers = [pool.request("POST", "/x", body=json.dumps({"i": i}).encode(),
                            headers={"Content-Type": "application/json"}) for i in range(5)]
    assert [json.loads(a.data)["got"] for a in answers] == [json.dumps({"i": i}) for i in range(5)]
    assert all(a.headers.get("Connection") != "close" for a in answers)
    assert pool.num_connections == 1 and pool.num_requests == 5


def test_a_body_the_app_did_not_read_does_not_become_the_next_request(echo):
    pool = pool_for(echo)
    first = pool.request("POST", "/unread", body=b"GET /stolen HTTP/1.1\r\n\r\n" * 3)
    second = pool.request("POST", "/x", body=b"next")
    assert json.loads(first.data) == {"read": False}
    assert json.loads(second.data) == {"got": "next"}
    assert pool.num_connections == 1


def raw_exchange(server, request):
    """Send ``request`` on a new socket; return everything the server wrote until it closed (or 2 s)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except socket.timeout:
            return received, False
        return received, True


def test_http_1_0_and_connection_close_still_close(echo):
    for request in (b"POST /x HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
                    b"POST /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"):
        received, closed = raw_exchange(echo, request)
        assert b'{"got": "hi"}' in received and closed


def test_a_kept_connection_stays_open_after_the_answer(echo):
    received, closed = raw_exchange(echo, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
    assert b"Content-Length: 13" in received and b'{"got": "hi"}' in received
    assert not closed


def test_a_hang_up_drops_the_connection_without_an_answer(echo):
    received, closed = raw_exchange(echo, b"POST /hang-up HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert received == b"" and closed


def test_stopping_a_fake_ends_the_connections_clients_keep(echo):
    pool = pool_for(echo)
    assert pool.request("POST", "/x", body=b"a").status == 200
    echo.stop()
    with pytest.raises(urllib3.exceptions.HTTPError):
        pool.request("POST", "/x", body=b"b")
