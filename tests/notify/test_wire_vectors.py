"""The SMS clients against the known vectors of tests/wire_vectors.py (no fake of the sandbox involved)."""
from notify.sms import EsmsClient, SpeedSmsClient
from tests import wire_vectors as v
from tests.wire_vectors import Recorder


def test_the_esms_client_sends_the_protocol_s_request():
    with Recorder(lambda body: {"CodeResult": "100", "SMSID": "s-1"}) as esms:
        accepted = EsmsClient(esms.base_url, "vector-key", "vector-secret", "DICHVUCONG",
                              callback_url="https://notify.example/callbacks/esms").send("n-1", "0912345678",
                                                                                         "Ho so X-1 da xong")
    [request] = esms.requests
    assert (request["path"], request["body"]) == (v.ESMS_PATH, v.ESMS_SEND)
    assert request["headers"]["Content-Type"] == "application/json"
    assert accepted.reference == "s-1"


def test_the_speedsms_client_sends_the_protocol_s_request_with_basic_auth():
    answer = {"status": "success", "code": "00", "data": {"tranId": 7, "totalSMS": 1, "totalPrice": 250,
                                                          "invalidPhone": []}}
    with Recorder(lambda body: answer) as speedsms:
        accepted = SpeedSmsClient(speedsms.base_url, v.SPEEDSMS_TOKEN, "DICHVUCONG").send("n-1", "0912345678",
                                                                                         "Ho so X-1 da xong")
    [request] = speedsms.requests
    assert (request["path"], request["body"]) == (v.SPEEDSMS_PATH, v.SPEEDSMS_SEND)
    assert request["headers"]["Authorization"] == v.SPEEDSMS_AUTHORIZATION
    assert accepted.reference == "7"
