"""The sandbox's fakes against the known vectors of tests/wire_vectors.py, with nothing of the services."""
from urllib.parse import urlencode

import pytest
import requests

from sandbox.fakes import FakeEsms, FakeMomo, FakeNationalPortal, FakeSpeedSms, FakeVnpay
from sandbox.fakes import momo, vnpay
from tests import wire_vectors as v

QUERY_ANSWER_ORDER = ("ResponseId|Command|ResponseCode|Message|TmnCode|TxnRef|Amount|BankCode|PayDate|TransactionNo|"
                      "TransactionType|TransactionStatus|OrderInfo|PromotionCode|PromotionAmount").split("|")
REFUND_ANSWER_ORDER = QUERY_ANSWER_ORDER[:13]


def answer_text(answer, order):
    """The protocol's answer hash text, joined here by hand from the answer's fields."""
    return "|".join(str(answer.get(f"vnp_{name}") or "") for name in order)


def vnpay_signed(body, text):
    return {**body, "vnp_SecureHash": v.hmac_sha512(v.VNPAY_SECRET, text)}


def momo_signed(body, text):
    return {**body, "signature": v.hmac_sha256(v.MOMO_SECRET, text)}


# --- VNPay --------------------------------------------------------------------------------------------------

def test_vnpay_signs_the_pay_url_text_the_protocol_describes():
    assert vnpay.signed_text(v.VNPAY_PAY_PARAMS) == v.VNPAY_PAY_TEXT
    assert vnpay.sign(v.VNPAY_PAY_PARAMS, v.VNPAY_SECRET) == v.hmac_sha512(v.VNPAY_SECRET, v.VNPAY_PAY_TEXT)


@pytest.mark.parametrize("body, order, text", [
    (v.VNPAY_QUERY, vnpay.QUERY_ORDER, v.VNPAY_QUERY_TEXT),
    (v.VNPAY_REFUND, vnpay.REFUND_ORDER, v.VNPAY_REFUND_TEXT),
    (v.VNPAY_QUERY_ANSWER, vnpay.QUERY_ANSWER_ORDER, v.VNPAY_QUERY_ANSWER_TEXT),
    (v.VNPAY_REFUND_ANSWER, vnpay.REFUND_ANSWER_ORDER, v.VNPAY_REFUND_ANSWER_TEXT),
], ids=["querydr", "refund", "querydr answer", "refund answer"])
def test_vnpay_pipe_hashes_follow_the_protocol_order(body, order, text):
    assert vnpay.pipe_sign(body, order, v.VNPAY_SECRET) == v.hmac_sha512(v.VNPAY_SECRET, text)


@pytest.fixture
def fake_vnpay():
    fake = FakeVnpay(tmn_code=v.VNPAY_TMN, hash_secret=v.VNPAY_SECRET).start()
    yield fake
    fake.stop()


def test_the_fake_pay_page_takes_a_hand_signed_url_in_either_hex_case_and_refuses_a_tampered_one(fake_vnpay):
    signature = v.hmac_sha512(v.VNPAY_SECRET, v.VNPAY_PAY_TEXT)
    tampered = v.VNPAY_PAY_TEXT.replace("vnp_Amount=20000000", "vnp_Amount=100")
    assert requests.get(f"{fake_vnpay.payment_url}?{tampered}&vnp_SecureHash={signature}", timeout=5).status_code == 400
    assert fake_vnpay.orders == {}
    url = f"{fake_vnpay.payment_url}?{v.VNPAY_PAY_TEXT}&vnp_SecureHash={signature.upper()}"
    assert requests.get(url, timeout=5).status_code == 200
    assert fake_vnpay.orders["P261126003005VECTOR"]["amount"] == 20000000


def test_the_fake_signs_its_ipn_over_the_sorted_form_encoded_fields(fake_vnpay):
    fake_vnpay.visit(f"{fake_vnpay.payment_url}?{v.VNPAY_PAY_TEXT}&vnp_SecureHash="
                     + v.hmac_sha512(v.VNPAY_SECRET, v.VNPAY_PAY_TEXT))
    params = fake_vnpay.pay("P261126003005VECTOR")
    signed = {key: value for key, value in params.items() if key not in ("vnp_SecureHash", "vnp_SecureHashType")}
    assert params["vnp_SecureHash"] == v.hmac_sha512(v.VNPAY_SECRET, urlencode(sorted(signed.items())))
    assert (params["vnp_Amount"], params["vnp_ResponseCode"], params["vnp_TransactionStatus"]) == (
        "20000000", "00", "00")


def test_the_fake_answers_a_hand_signed_querydr_and_refund_with_answers_signed_in_the_protocol_order(fake_vnpay):
    fake_vnpay.visit(f"{fake_vnpay.payment_url}?{v.VNPAY_PAY_TEXT}&vnp_SecureHash="
                     + v.hmac_sha512(v.VNPAY_SECRET, v.VNPAY_PAY_TEXT))
    fake_vnpay.pay("P261126003005VECTOR", transaction_no="14123456")

    query = requests.post(fake_vnpay.api_url, json=vnpay_signed(v.VNPAY_QUERY, v.VNPAY_QUERY_TEXT), timeout=5).json()
    assert (query["vnp_ResponseCode"], query["vnp_TransactionStatus"], query["vnp_Amount"]) == ("00", "00", "20000000")
    assert query["vnp_SecureHash"] == v.hmac_sha512(v.VNPAY_SECRET, answer_text(query, QUERY_ANSWER_ORDER))
    repeated = requests.post(fake_vnpay.api_url, json=vnpay_signed(v.VNPAY_QUERY, v.VNPAY_QUERY_TEXT), timeout=5)
    assert repeated.json()["vnp_ResponseCode"] == "94"  # every vnp_RequestId is new
    forged = requests.post(fake_vnpay.api_url, json={**vnpay_signed(v.VNPAY_QUERY, v.VNPAY_QUERY_TEXT),
                                                     "vnp_RequestId": "other"}, timeout=5).json()
    assert forged["vnp_ResponseCode"] == "97"

    refund = requests.post(fake_vnpay.api_url, json=vnpay_signed(v.VNPAY_REFUND, v.VNPAY_REFUND_TEXT), timeout=5).json()
    assert (refund["vnp_ResponseCode"], refund["vnp_TransactionType"]) == ("00", "02")
    assert refund["vnp_SecureHash"] == v.hmac_sha512(v.VNPAY_SECRET, answer_text(refund, REFUND_ANSWER_ORDER))
    assert [body["vnp_RequestId"] for body in fake_vnpay.refunds] == ["d4e5f6"]


# --- MoMo ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, keys, text", [
    (v.MOMO_CREATE, momo.CREATE_SIGNED, v.MOMO_CREATE_TEXT),
    (v.MOMO_IPN, momo.IPN_SIGNED, v.MOMO_IPN_TEXT),
    (v.MOMO_QUERY, momo.QUERY_SIGNED, v.MOMO_QUERY_TEXT),
    (v.MOMO_REFUND, momo.REFUND_SIGNED, v.MOMO_REFUND_TEXT),
], ids=["create", "ipn", "query", "refund"])
def test_momo_raw_signatures_are_the_protocol_strings(body, keys, text):
    fake = FakeMomo(partner_code=v.MOMO_PARTNER, access_key=v.MOMO_ACCESS, secret_key=v.MOMO_SECRET)
    assert momo.raw_signature({**body, "accessKey": v.MOMO_ACCESS}, keys) == text
    assert fake.sign(body, keys) == v.hmac_sha256(v.MOMO_SECRET, text)


@pytest.fixture
def fake_momo():
    fake = FakeMomo(partner_code=v.MOMO_PARTNER, access_key=v.MOMO_ACCESS, secret_key=v.MOMO_SECRET).start()
    yield fake
    fake.stop()


def test_the_fake_momo_takes_hand_signed_requests_and_signs_its_ipn_as_the_protocol_says(fake_momo):
    api = fake_momo.api_base
    forged = requests.post(api + "/v2/gateway/api/create", json={**momo_signed(v.MOMO_CREATE, v.MOMO_CREATE_TEXT),
                                                                 "amount": 1000}, timeout=5).json()
    assert forged["resultCode"] == 11 and fake_momo.orders == {}
    created = requests.post(api + "/v2/gateway/api/create", json=momo_signed(v.MOMO_CREATE, v.MOMO_CREATE_TEXT),
                            timeout=5).json()
    assert created["resultCode"] == 0 and created["payUrl"].startswith(api)
    query = requests.post(api + "/v2/gateway/api/query", json=momo_signed(v.MOMO_QUERY, v.MOMO_QUERY_TEXT),
                          timeout=5).json()
    assert query["resultCode"] == 1000  # created, not paid yet

    ipn = fake_momo.pay("P1")
    text = (f"accessKey={v.MOMO_ACCESS}&amount=150000&extraData=&message={ipn['message']}&orderId=P1"
            f"&orderInfo=Le phi ho so&orderType=momo_wallet&partnerCode={v.MOMO_PARTNER}&payType=qr&requestId=P1"
            f"&responseTime={ipn['responseTime']}&resultCode=0&transId={ipn['transId']}")
    assert ipn["signature"] == v.hmac_sha256(v.MOMO_SECRET, text)

    refund_body = {**v.MOMO_REFUND, "transId": ipn["transId"]}
    refund_text = v.MOMO_REFUND_TEXT.replace("transId=4012345678", f"transId={ipn['transId']}")
    refund = requests.post(api + "/v2/gateway/api/refund", json=momo_signed(refund_body, refund_text),
                           timeout=5).json()
    assert refund["resultCode"] == 0 and len(fake_momo.refunds) == 1


# --- eSMS, SpeedSMS -----------------------------------------------------------------------------------------

@pytest.fixture
def esms():
    fake = FakeEsms(api_key="vector-key", secret_key="vector-secret", brandname="DICHVUCONG",
                    timeout_seconds=1.0).start()
    yield fake
    fake.stop()


def test_the_fake_esms_accepts_the_protocol_request_once_per_request_id(esms):
    url = esms.base_url + v.ESMS_PATH
    first = requests.post(url, json=v.ESMS_SEND, timeout=5).json()
    assert first["CodeResult"] == "100" and first["SMSID"]
    assert requests.post(url, json=v.ESMS_SEND, timeout=5).json()["CodeResult"] == "124"
    assert requests.post(url, json={**v.ESMS_SEND, "RequestId": "n-2", "ApiKey": "wrong"},
                         timeout=5).json()["CodeResult"] == "101"
    unknown_field = {key: value for key, value in v.ESMS_SEND.items() if key != "SmsType"}
    assert requests.post(url, json=unknown_field, timeout=5).status_code == 400
    assert [sms["phone"] for sms in esms.delivered] == ["84912345678"] and len(esms.format_errors) == 1


def test_a_scripted_timeout_leaves_the_request_without_an_answer(esms):
    esms.script("timeout")
    with pytest.raises(requests.Timeout):
        requests.post(esms.base_url + v.ESMS_PATH, json=v.ESMS_SEND, timeout=0.3)
    esms.script("timeout")
    with pytest.raises(requests.ConnectionError):  # a patient caller: the connection drops, no HTTP answer
        requests.post(esms.base_url + v.ESMS_PATH, json={**v.ESMS_SEND, "RequestId": "n-3"}, timeout=5)
    assert esms.delivered == []


def test_the_fake_speedsms_wants_basic_auth_with_the_token_and_x():
    fake = FakeSpeedSms(access_token=v.SPEEDSMS_TOKEN, sender="DICHVUCONG").start()
    try:
        url = fake.base_url + v.SPEEDSMS_PATH
        answer = requests.post(url, json=v.SPEEDSMS_SEND, headers={"Authorization": v.SPEEDSMS_AUTHORIZATION},
                               timeout=5).json()
        assert (answer["status"], answer["code"]) == ("success", "00") and answer["data"]["tranId"]
        refused = requests.post(url, json=v.SPEEDSMS_SEND, headers={"Authorization": "Basic eDp4"}, timeout=5)
        assert refused.status_code == 400 and [sms["phone"] for sms in fake.delivered] == ["84912345678"]
    finally:
        fake.stop()


# --- national portal ----------------------------------------------------------------------------------------

def test_the_fake_portal_logs_in_and_answers_calls_in_the_protocol_envelope():
    procedures = {"1.000001-mau": {"name": "Cấp Phiếu lý lịch tư pháp", "field_code": "LLTP",
                                   "field_name": "Lý lịch tư pháp"}}
    fake = FakeNationalPortal(username="vector-user", password="vector-password", agency_code=v.PORTAL_AGENCY,
                              procedures=procedures).start()
    try:
        def post(path, body):
            return requests.post(fake.base_url + path, json=body, timeout=5).json()

        assert post("/api/login", {**v.PORTAL_LOGIN, "password": "wrong"})["error_code"] == "403"
        login = post("/api/login", v.PORTAL_LOGIN)
        assert login["error_code"] == 0 and login["session"]
        envelope = {"session": login["session"], "madonvi": v.PORTAL_AGENCY}
        catalogue = post("/api/integration", {**envelope, "service": "LayThuTuc", "maTTHC": "1.000001-mau"})
        assert catalogue["error_code"] == "00"
        assert catalogue["result"] == [{"MATTHC": "1.000001-mau", "TENTTHC": "Cấp Phiếu lý lịch tư pháp",
                                        "LINHVUCTHUCHIEN": [{"MALINHVUC": "LLTP", "TENLINHVUC": "Lý lịch tư pháp"}]}]
        assert post("/api/integration", {**envelope, "service": "TraCuuHoSo", "mahoso": "X-1"})["result"] == []
        fake.expire_sessions()
        assert post("/api/integration", {**envelope, "service": "TraCuuHoSo", "mahoso": "X-1"})["error_code"] == "401"
    finally:
        fake.stop()
