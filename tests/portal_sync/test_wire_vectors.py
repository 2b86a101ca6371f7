"""The national portal client against the protocol's envelope (no fake of the sandbox involved)."""
from portal_sync.client import NationalPortalClient, PortalSettings
from tests import wire_vectors as v
from tests.wire_vectors import Recorder


def answer(body):
    if "username" in body:
        return {"error_code": 0, "session": "s-1"}
    return {"error_code": "00", "message": "Thành công", "result": []}


def test_the_client_logs_in_then_calls_with_session_agency_and_service():
    with Recorder(answer) as adapter:
        client = NationalPortalClient(PortalSettings(adapter.base_url, username="vector-user",
                                                     password="vector-password", agency_code=v.PORTAL_AGENCY))
        assert client.look_up("X-1") is None
    assert [(request["path"], request["body"]) for request in adapter.requests] == [
        ("/api/login", v.PORTAL_LOGIN),
        ("/api/integration", {"session": "s-1", "madonvi": v.PORTAL_AGENCY, "service": "TraCuuHoSo", "mahoso": "X-1"}),
    ]
