"""Stricter IPN checks (issue 9): our merchant only, a success needs its transaction status, exact integers."""
import hashlib
import hmac
from urllib.parse import urlencode

import pytest

from payment.gateways import ForeignMerchant, InvalidSignature, MalformedMessage
from payment.gateways.momo import IPN_FIELDS, MomoGateway, hmac_sha256, raw_signature
from payment.gateways.vnpay import VnpayGateway
from portal_shared.untrusted import Malformed, json_object

SECRET = "SECRETKEYFORTESTS"
VNPAY = VnpayGateway("TMN00001", SECRET, "https://sandbox.example/pay", "https://api.example/")
MOMO = MomoGateway("PARTNER", "ACCESS", "MOMOSECRET", "https://momo.example")


def signed_vnpay(**fields):
    params = {"vnp_TmnCode": "TMN00001", "vnp_TxnRef": "T1", "vnp_Amount": "20000000", "vnp_ResponseCode": "00",
              "vnp_TransactionStatus": "00", **fields}
    params = {k: v for k, v in params.items() if v is not None}
    params["vnp_SecureHash"] = hmac.new(SECRET.encode(), urlencode(sorted(params.items())).encode(),
                                        hashlib.sha512).hexdigest()
    return params


def signed_momo(**fields):
    body = {"partnerCode": "PARTNER", "orderId": "T1", "requestId": "T1", "amount": 200000, "orderInfo": "le phi",
            "orderType": "momo_wallet", "transId": 4100000001, "resultCode": 0, "message": "Successful.",
            "payType": "qr", "responseTime": 1764000000000, "extraData": "", **fields}
    body["signature"] = hmac_sha256("MOMOSECRET", raw_signature({**body, "accessKey": "ACCESS"}, IPN_FIELDS))
    return body


def test_a_signed_vnpay_ipn_for_another_merchant_is_refused():
    assert VNPAY.parse_notification(signed_vnpay()).amount == 200000
    with pytest.raises(ForeignMerchant):
        VNPAY.parse_notification(signed_vnpay(vnp_TmnCode="OTHER001"))
    with pytest.raises(MalformedMessage):
        VNPAY.parse_notification(signed_vnpay(vnp_TmnCode=None))


def test_a_vnpay_success_without_its_transaction_status_is_no_statement():
    with pytest.raises(MalformedMessage):
        VNPAY.parse_notification(signed_vnpay(vnp_TransactionStatus=None))
    failed = VNPAY.parse_notification(signed_vnpay(vnp_ResponseCode="24", vnp_TransactionStatus=None))
    assert failed.outcome.value == "failed"  # a failure code alone is still a failure


@pytest.mark.parametrize("amount", [" 20000000", "+20000000", "2e7", "20_000_000", "２００００"])
def test_vnpay_amounts_are_plain_digits(amount):
    with pytest.raises(MalformedMessage):
        VNPAY.parse_notification(signed_vnpay(vnp_Amount=amount))


@pytest.mark.parametrize("amount", [200000.99, 200000.0, "200000", True, None, [200000]])
def test_momo_amounts_must_be_exact_integers_even_when_signed(amount):
    with pytest.raises(MalformedMessage):
        MOMO.parse_notification(signed_momo(amount=amount))


@pytest.mark.parametrize("field", ["transId", "resultCode", "responseTime"])
def test_momo_integer_fields_must_be_integers(field):
    with pytest.raises(MalformedMessage):
        MOMO.parse_notification(signed_momo(**{field: "1"}))


def test_momo_needs_every_signed_field():
    assert MOMO.parse_notification(signed_momo()).amount == 200000
    for field in IPN_FIELDS[1:]:
        body = signed_momo()
        del body[field]
        with pytest.raises(MalformedMessage):
            MOMO.parse_notification(body)
    with pytest.raises(ForeignMerchant):
        MOMO.parse_notification(signed_momo(partnerCode="SOMEONE"))
    with pytest.raises(InvalidSignature):
        MOMO.parse_notification({**signed_momo(), "signature": "0" * 64})


@pytest.mark.parametrize("body", [b'{"signature": "\\ud800"}', b'{"orderInfo": "\\udfff"}',
                                  b'{"orderInfo": "a\\u0000"}', b"\xed\xa0\x80", b'{"a": [1]}'])
def test_bodies_with_lone_surrogates_nul_or_nesting_are_malformed(body):
    with pytest.raises(Malformed):
        json_object(body)
