"""Wire formats checked against vectors computed independently, without the service."""
import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from payment.domain.model import Outcome, Status, new_txn_ref
from payment.gateways.vnpay import judge_notification
from payment.gateways import CheckoutRequest, InvalidSignature, MalformedMessage
from payment.gateways.momo import MomoGateway
from payment.gateways.vnpay import VnpayGateway, pipe_hash, QUERY_HASH_ORDER

SECRET = "SECRETKEYFORTESTS"


def vnpay_gateway():
    return VnpayGateway("TMN00001", SECRET, "https://sandbox.example/paymentv2/vpcpay.html", "https://api.example/")


def checkout_request(**overrides):
    created = datetime(2026, 11, 25, 17, 30, 5, tzinfo=timezone.utc)  # 00:30:05 on the 26th in Vietnam
    values = dict(txn_ref="P261126003005ABCDEFGHJK", amount=200000, order_info="Thanh toan le phi ho so X-1",
                  return_url="https://portal.example/payment/return?a=1&b=hai ba", client_ip="203.0.113.9",
                  ipn_url="https://pay.example/callbacks/momo/ipn", created_at=created,
                  expires_at=created + timedelta(minutes=15), bank_code=None, locale="vn")
    values.update(overrides)
    return CheckoutRequest(**values)


def test_vnpay_pay_url_matches_a_hand_computed_signature():
    url = vnpay_gateway().create_checkout(checkout_request()).pay_url
    params = dict(parse_qsl(urlsplit(url).query))
    given = params.pop("vnp_SecureHash")
    expected = hmac.new(SECRET.encode(), urlencode(sorted(params.items())).encode(), hashlib.sha512).hexdigest()
    assert given == expected
    assert params["vnp_Amount"] == "20000000"
    assert params["vnp_CreateDate"] == "20261126003005"
    assert params["vnp_ExpireDate"] == "20261126004505"
    assert params["vnp_ReturnUrl"] == "https://portal.example/payment/return?a=1&b=hai ba"
    assert params["vnp_IpAddr"] == "203.0.113.9"
    assert "vnp_BankCode" not in params  # empty values are left out
    assert "+" in urlsplit(url).query and "%20" not in urlsplit(url).query  # space as an HTML form encodes it


def test_vnpay_ipn_signature_accepts_either_hex_case_and_rejects_tampering():
    gateway = vnpay_gateway()
    params = {"vnp_TmnCode": "TMN00001", "vnp_TxnRef": "T1", "vnp_Amount": "20000000", "vnp_ResponseCode": "00",
              "vnp_TransactionStatus": "00", "vnp_TransactionNo": "14000000", "vnp_PayDate": "20261126010000"}
    signature = hmac.new(SECRET.encode(), urlencode(sorted(params.items())).encode(), hashlib.sha512).hexdigest()
    report = gateway.parse_notification({**params, "vnp_SecureHash": signature.upper()})
    assert (report.outcome, report.amount, report.gateway_txn_no) == (Outcome.succeeded, 200000, "14000000")
    assert report.paid_at == datetime(2026, 11, 25, 18, 0, tzinfo=timezone.utc)
    with pytest.raises(InvalidSignature):
        gateway.parse_notification({**params, "vnp_Amount": "100", "vnp_SecureHash": signature})
    bad = {**params, "vnp_Amount": "abc"}
    bad["vnp_SecureHash"] = hmac.new(SECRET.encode(), urlencode(sorted(bad.items())).encode(),
                                     hashlib.sha512).hexdigest()
    with pytest.raises(MalformedMessage):
        gateway.parse_notification(bad)


def test_vnpay_success_needs_both_codes():
    gateway = vnpay_gateway()
    params = {"vnp_TmnCode": "TMN00001", "vnp_TxnRef": "T1", "vnp_Amount": "100000", "vnp_ResponseCode": "00",
              "vnp_TransactionStatus": "02"}
    params["vnp_SecureHash"] = hmac.new(SECRET.encode(), urlencode(sorted(params.items())).encode(),
                                        hashlib.sha512).hexdigest()
    report = gateway.parse_notification(params)
    assert report.outcome is Outcome.failed and "vnp_TransactionStatus=02" in report.reason


def test_querydr_hash_is_pipe_joined_in_vnpay_order():
    body = {"vnp_RequestId": "r1", "vnp_Version": "2.1.0", "vnp_Command": "querydr", "vnp_TmnCode": "TMN",
            "vnp_TxnRef": "T1", "vnp_TransactionDate": "20261126003005", "vnp_CreateDate": "20261126010000",
            "vnp_IpAddr": "127.0.0.1", "vnp_OrderInfo": "Truy van"}
    text = "r1|2.1.0|querydr|TMN|T1|20261126003005|20261126010000|127.0.0.1|Truy van"
    assert pipe_hash(body, QUERY_HASH_ORDER, SECRET) == hmac.new(SECRET.encode(), text.encode(),
                                                                 hashlib.sha512).hexdigest()


def test_momo_ipn_signature_over_the_documented_fields():
    gateway = MomoGateway("PARTNER", "ACCESS", "MOMOSECRET", "https://momo.example")
    body = {"partnerCode": "PARTNER", "orderId": "T1", "requestId": "T1", "amount": 50000, "orderInfo": "x",
            "orderType": "momo_wallet", "transId": 123456789, "resultCode": 0, "message": "ok", "payType": "qr",
            "responseTime": 1764100000000, "extraData": ""}
    text = ("accessKey=ACCESS&amount=50000&extraData=&message=ok&orderId=T1&orderInfo=x&orderType=momo_wallet"
            "&partnerCode=PARTNER&payType=qr&requestId=T1&responseTime=1764100000000&resultCode=0&transId=123456789")
    body["signature"] = hmac.new(b"MOMOSECRET", text.encode(), hashlib.sha256).hexdigest()
    report = gateway.parse_notification(body)
    assert (report.outcome, report.amount, report.gateway_txn_no) == (Outcome.succeeded, 50000, "123456789")
    assert gateway.parse_notification({**body, "resultCode": 1000, "signature": hmac.new(
        b"MOMOSECRET", text.replace("resultCode=0", "resultCode=1000").encode(), hashlib.sha256).hexdigest()
    }).outcome is Outcome.pending
    with pytest.raises(InvalidSignature):
        gateway.parse_notification({**body, "amount": 1000})


def test_txn_ref_is_alphanumeric_unique_and_short():
    now = datetime.now(timezone.utc)
    refs = {new_txn_ref(now) for _ in range(1000)}
    assert len(refs) == 1000
    assert all(ref.isalnum() and ref.isascii() and len(ref) <= 32 for ref in refs)


def test_ipn_checks_run_in_vnpay_order():
    assert judge_notification(None, None, 1, Outcome.succeeded).code == "01"
    assert judge_notification(Status.succeeded.value, 100, 99, Outcome.succeeded).code == "04"
    assert judge_notification(Status.succeeded.value, 100, 100, Outcome.succeeded).code == "02"
    assert judge_notification(Status.failed.value, 100, 100, Outcome.succeeded).code == "02"
    assert judge_notification(Status.pending.value, 100, 100, Outcome.failed).code == "00"
    assert judge_notification(Status.expired.value, 100, 100, Outcome.succeeded).code == "00"
    assert judge_notification(Status.expired.value, 100, 100, Outcome.failed).code == "02"


def test_vnpay_encodes_as_an_html_form_does():
    # application/x-www-form-urlencoded keeps only A-Z a-z 0-9 * - . _ (space → +): "~" is %7E, "*" stays
    request = checkout_request(return_url="https://portal.example/~citizen/pay*ok?x=a b")
    url = vnpay_gateway().create_checkout(request).pay_url
    query = urlsplit(url).query
    assert "vnp_ReturnUrl=https%3A%2F%2Fportal.example%2F%7Ecitizen%2Fpay*ok%3Fx%3Da+b&" in query
    signed, given = query.rsplit("&vnp_SecureHash=", 1)
    assert given == hmac.new(SECRET.encode(), signed.encode(), hashlib.sha512).hexdigest()


def test_a_non_ascii_signature_is_a_bad_signature_not_a_crash():
    params = {"vnp_TmnCode": "TMN00001", "vnp_TxnRef": "T1", "vnp_Amount": "100000", "vnp_ResponseCode": "00",
              "vnp_TransactionStatus": "00",
              "vnp_SecureHash": "chữ ký"}
    with pytest.raises(InvalidSignature):
        vnpay_gateway().parse_notification(params)
    gateway = MomoGateway("PARTNER", "ACCESS", "MOMOSECRET", "https://momo.example")
    with pytest.raises(InvalidSignature):
        gateway.parse_notification({"partnerCode": "PARTNER", "orderId": "T1", "requestId": "T1", "amount": 1000,
                                    "orderInfo": "x", "orderType": "momo_wallet", "transId": 1, "resultCode": 0,
                                    "message": "ok", "payType": "qr", "responseTime": 1, "extraData": "",
                                    "signature": "chữ ký"})


def test_a_signed_vnpay_amount_that_is_not_whole_vnd_is_an_amount_mismatch():
    params = {"vnp_TmnCode": "TMN00001", "vnp_TxnRef": "T1", "vnp_Amount": "10000050", "vnp_ResponseCode": "00",
              "vnp_TransactionStatus": "00"}
    params["vnp_SecureHash"] = hmac.new(SECRET.encode(), urlencode(sorted(params.items())).encode(),
                                        hashlib.sha512).hexdigest()
    report = vnpay_gateway().parse_notification(params)  # not a MalformedMessage (answered 99, retried forever)
    assert report.amount != 100000 and report.amount != 100001
    assert judge_notification(Status.pending.value, 100000, report.amount, report.outcome).code == "04"
    assert judge_notification(None, None, report.amount, report.outcome).code == "01"


def test_txn_ref_survives_log_masking():
    from portal_shared.masking import mask_text

    now = datetime.now(timezone.utc)
    for _ in range(2000):
        ref = new_txn_ref(now)
        assert mask_text(ref) == ref and mask_text(f"txn_ref={ref}") == f"txn_ref={ref}"
