"""The payment adapters against the known vectors of tests/wire_vectors.py (no fake of the sandbox involved)."""
from datetime import datetime, timedelta, timezone

import pytest

from payment.domain.model import Outcome
from payment.gateways import CheckoutRequest, GatewayUnavailable, QueryRequest, RefundRequest
from payment.gateways.momo import MomoGateway
from payment.gateways.vnpay import VnpayGateway
from tests import wire_vectors as v
from tests.wire_vectors import Recorder

CREATED = datetime(2026, 11, 25, 17, 30, 5, tzinfo=timezone.utc)  # 20261126003005 in Vietnam
VNPAY_PAY_URL = "https://pay.vnpay.example/paymentv2/vpcpay.html"


def pipe_text(body, order):
    return "|".join(str(body.get(f"vnp_{name}") or "") for name in order.split("|"))


QUERY_ORDER = "RequestId|Version|Command|TmnCode|TxnRef|TransactionDate|CreateDate|IpAddr|OrderInfo"
REFUND_ORDER = ("RequestId|Version|Command|TmnCode|TransactionType|TxnRef|Amount|TransactionNo|TransactionDate|"
                "CreateBy|CreateDate|IpAddr|OrderInfo")


def test_the_vnpay_pay_url_is_the_vector_s_text_and_signature():
    gateway = VnpayGateway(v.VNPAY_TMN, v.VNPAY_SECRET, VNPAY_PAY_URL, "https://api.vnpay.example/")
    request = CheckoutRequest(txn_ref="P261126003005VECTOR", amount=200000, order_info="Le phí ho so X-1",
                              return_url="https://portal.example/~a/b*c?x=1&y=a b", client_ip="203.0.113.9",
                              ipn_url="https://pay.example/callbacks/vnpay/ipn", created_at=CREATED,
                              expires_at=CREATED + timedelta(minutes=15), bank_code=None, locale="vn")
    signature = v.hmac_sha512(v.VNPAY_SECRET, v.VNPAY_PAY_TEXT)
    assert gateway.create_checkout(request).pay_url == f"{VNPAY_PAY_URL}?{v.VNPAY_PAY_TEXT}&vnp_SecureHash={signature}"


def test_vnpay_querydr_and_refund_are_signed_in_the_protocol_order_and_their_answers_checked():
    def answer(body):
        document = {**(v.VNPAY_QUERY_ANSWER if body["vnp_Command"] == "querydr" else v.VNPAY_REFUND_ANSWER),
                    "vnp_TxnRef": body["vnp_TxnRef"]}
        text = (v.VNPAY_QUERY_ANSWER_TEXT if body["vnp_Command"] == "querydr" else v.VNPAY_REFUND_ANSWER_TEXT)
        return {**document, "vnp_SecureHash": v.hmac_sha512(v.VNPAY_SECRET, text)}

    with Recorder(answer) as api:
        gateway = VnpayGateway(v.VNPAY_TMN, v.VNPAY_SECRET, VNPAY_PAY_URL, api.base_url)
        report = gateway.query(QueryRequest("P261126003005VECTOR", 200000, CREATED, "Le phi"))
        refund = gateway.refund(RefundRequest("P261126003005VECTOR", 200000, "14123456", CREATED, "withdrawn"))
    assert (report.outcome, report.amount, report.gateway_txn_no) == (Outcome.succeeded, 200000, "14123456")
    assert refund.accepted
    query_body, refund_body = (request["body"] for request in api.requests)
    assert query_body["vnp_SecureHash"] == v.hmac_sha512(v.VNPAY_SECRET, pipe_text(query_body, QUERY_ORDER))
    assert query_body["vnp_TransactionDate"] == "20261126003005"
    assert refund_body["vnp_SecureHash"] == v.hmac_sha512(v.VNPAY_SECRET, pipe_text(refund_body, REFUND_ORDER))
    assert (refund_body["vnp_TransactionType"], str(refund_body["vnp_Amount"]), refund_body["vnp_TransactionNo"]) == (
        "02", "20000000", "14123456")


def test_a_vnpay_answer_signed_over_other_fields_is_refused():
    def answer(body):  # signed without the promotion fields' two empty places
        return {**v.VNPAY_QUERY_ANSWER, "vnp_SecureHash": v.hmac_sha512(v.VNPAY_SECRET, v.VNPAY_REFUND_ANSWER_TEXT)}

    with Recorder(answer) as api:
        gateway = VnpayGateway(v.VNPAY_TMN, v.VNPAY_SECRET, VNPAY_PAY_URL, api.base_url)
        with pytest.raises(GatewayUnavailable, match="signature"):
            gateway.query(QueryRequest("P261126003005VECTOR", 200000, CREATED, "Le phi"))


def momo_gateway(api_base):
    return MomoGateway(v.MOMO_PARTNER, v.MOMO_ACCESS, v.MOMO_SECRET, api_base)


def test_momo_create_query_and_refund_send_the_protocol_s_signatures():
    def answer(body):
        return {"resultCode": 0, "message": "ok", "payUrl": "https://momo.example/pay", "amount": 150000,
                "transId": 4012345678, "responseTime": 1764100000000}

    with Recorder(answer) as api:
        gateway = momo_gateway(api.base_url)
        gateway.create_checkout(CheckoutRequest(
            txn_ref="P1", amount=150000, order_info="Le phi ho so", return_url="https://portal.example/return?a=1",
            client_ip="203.0.113.9", ipn_url="https://pay.example/callbacks/momo/ipn", created_at=CREATED,
            expires_at=CREATED + timedelta(minutes=15), locale="vn"))
        gateway.query(QueryRequest("P1", 150000, CREATED, "Le phi ho so"))
        gateway.refund(RefundRequest("P1", 150000, "4012345678", CREATED, "Hoan phi"))
    create, query, refund = api.requests
    assert [request["path"] for request in api.requests] == [
        "/v2/gateway/api/create", "/v2/gateway/api/query", "/v2/gateway/api/refund"]
    assert create["body"] == {**v.MOMO_CREATE, "signature": v.hmac_sha256(v.MOMO_SECRET, v.MOMO_CREATE_TEXT)}
    query_text = v.MOMO_QUERY_TEXT.replace("requestId=q1", f"requestId={query['body']['requestId']}")
    assert query["body"]["signature"] == v.hmac_sha256(v.MOMO_SECRET, query_text)
    refund_text = (v.MOMO_REFUND_TEXT.replace("orderId=P1R1", f"orderId={refund['body']['orderId']}")
                   .replace("requestId=f1", f"requestId={refund['body']['requestId']}"))
    assert refund["body"]["signature"] == v.hmac_sha256(v.MOMO_SECRET, refund_text)


def test_momo_ipn_vector_with_a_vietnamese_message_verifies():
    body = {**v.MOMO_IPN, "signature": v.hmac_sha256(v.MOMO_SECRET, v.MOMO_IPN_TEXT)}
    report = momo_gateway("https://momo.example").parse_notification(body)
    assert (report.outcome, report.amount, report.gateway_txn_no) == (Outcome.succeeded, 150000, "4012345678")
