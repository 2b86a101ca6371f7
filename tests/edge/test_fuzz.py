"""Property-based fuzzing of the three public callbacks of running services, through the nginx of infra/.

Hypothesis generates requests of every kind an attacker (or a broken
provider) could send: random bytes, strings that are not UTF-8, lone
surrogates, NULs, absurd nesting, wrong types, unsigned look-alikes, and
correctly signed messages with one field tampered with. For each endpoint at
least ``REQUESTS_PER_ENDPOINT`` requests are sent; no answer may be ≥ 500, and
the databases must be exactly as before (no unsigned or tampered request
changes anything). The counts are printed.
"""
import http.client
import json
import time
import uuid
from collections import Counter
from urllib.parse import quote_from_bytes

import eventlet
import sqlalchemy as sa
from eventlet.greenpool import GreenPool
from eventlet.queue import LightQueue
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from notify.orm import NotificationRow
from payment.gateways.momo import IPN_FIELDS, hmac_sha256, raw_signature
from payment.orm import payment_history, payments
from tests.edge.conftest import ESMS_TOKEN, MOMO_ACCESS_KEY, MOMO_PARTNER_CODE, MOMO_SECRET_KEY, requires_nginx
from tests.edge.test_edge import signed_vnpay_ipn, start_payment

pytestmark = requires_nginx

REQUESTS_PER_ENDPOINT = 10_000
BATCH = 25
CONNECTIONS = 8

JUNK_TEXT = ["\ud800", "\udfff", "a\x00b", "\x00", "\ufffd", "é", "\u202e", "0" * 5000, "", " ", "-1", "1e3",
             "200000.99", "null", "[]", "{}", "%00", "\r\n", "😀"]
junk_text = st.one_of(st.sampled_from(JUNK_TEXT), st.text(max_size=20),
                      st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1,
                              max_size=3))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                         st.floats(allow_nan=False, allow_infinity=False), junk_text)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(junk_text, inner, max_size=3), max_leaves=6)


def to_bytes(text):
    """UTF-8, keeping lone surrogates as the invalid bytes they would be on the wire."""
    return text.encode("utf-8", "surrogatepass")


def form_encode(fields):
    return "&".join(f"{quote_from_bytes(to_bytes(str(k)), safe='')}={quote_from_bytes(to_bytes(str(v)), safe='')}"
                    for k, v in fields)


def json_bytes(document):
    return json.dumps(document, ensure_ascii=True).encode()  # lone surrogates become \ud800 escapes


def deep(depth):
    return ("[" * depth).encode()


# --- one request = (method, path, headers, body) --------------------------------------------


def vnpay_requests(signed):
    fields = sorted(signed)
    tampered = st.builds(
        lambda field, value: {**signed, field: value}, st.sampled_from([f for f in fields if f != "vnp_SecureHash"]),
        junk_text | st.integers().map(str)).filter(lambda params: params != signed)
    dropped = st.sampled_from(fields).map(lambda field: {k: v for k, v in signed.items() if k != field})
    forged_hash = st.text(alphabet="0123456789abcdefABCDEF", min_size=0, max_size=130).map(
        lambda h: {**signed, "vnp_SecureHash": h})
    look_alike = st.dictionaries(st.sampled_from(fields) | junk_text, junk_text, max_size=14)
    as_pairs = st.one_of(tampered, dropped, forged_hash, look_alike).map(lambda d: form_encode(d.items()))
    repeated = st.sampled_from(fields).map(lambda f: form_encode(list(signed.items()) + [(f, signed[f])]))
    raw = st.binary(max_size=300).map(lambda b: quote_from_bytes(b, safe="=&"))
    return st.one_of(as_pairs, repeated, raw).map(
        lambda query: ("GET", f"/callbacks/vnpay/ipn?{query}", {}, b""))


def momo_requests(signed):
    fields = sorted(signed)
    tampered = st.builds(lambda field, value: {**signed, field: value},
                         st.sampled_from([f for f in fields if f != "signature"]), json_values).filter(
        lambda body: body != signed)
    amounts = st.sampled_from([200000.99, "200000.99", 200000.0, "2e5", True, -200000, 2 ** 64, "200000 ",
                               "٢٠٠٠٠٠"]).map(lambda amount: {**signed, "amount": amount})
    dropped = st.sampled_from(fields).map(lambda field: {k: v for k, v in signed.items() if k != field})
    look_alike = st.dictionaries(st.sampled_from(fields) | junk_text, json_values, max_size=16)
    documents = st.one_of(tampered, amounts, dropped, look_alike, json_values).map(json_bytes)
    bodies = st.one_of(documents, st.binary(max_size=400), st.integers(1, 60_000).map(deep),
                       st.sampled_from([b"", b"\x00", b"{\"a\":\"\\u0000\"}", b"\xff\xfe{}", b"{\"a\":1}" * 2]))
    content_types = st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""])
    return st.builds(lambda body, ctype: ("POST", "/callbacks/momo/ipn", {"Content-Type": ctype} if ctype else {},
                                          body), bodies, content_types)


def esms_requests(notification_ids):
    ids = st.sampled_from(notification_ids) if notification_ids else st.uuids().map(str)
    receipt = st.fixed_dictionaries(
        {"RequestId": ids | junk_text, "SMSID": st.uuids().map(lambda u: u.hex) | junk_text,
         "SendStatus": st.sampled_from([5, "5", 4, "4", 6, 2, "x", None]) | json_values},
        optional={"SendSuccess": json_values, "SendFailed": json_values, "extra": json_values})
    json_body = st.one_of(receipt, json_values, st.dictionaries(junk_text, json_values, max_size=6)).map(json_bytes)
    form_body = st.one_of(receipt.map(lambda r: form_encode((k, v) for k, v in r.items() if v is not None)),
                          st.binary(max_size=200).map(lambda b: quote_from_bytes(b, safe="=&"))).map(str.encode)
    bodies_and_types = st.one_of(
        st.tuples(json_body, st.just("application/json")),
        st.tuples(form_body, st.just("application/x-www-form-urlencoded")),
        st.tuples(st.binary(max_size=300) | st.integers(1, 60_000).map(deep),
                  st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", ""])),
    )
    tokens = st.one_of(st.just(ESMS_TOKEN), st.just(ESMS_TOKEN), st.just(ESMS_TOKEN),
                       st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40),
                       st.just(ESMS_TOKEN[:-1]), st.just(ESMS_TOKEN + "x"))
    queries = st.sampled_from(["", "", "", "?SMSID=1&SendStatus=5"])
    return st.builds(
        lambda body_type, token, query: ("POST", f"/callbacks/esms/{token}{query}",
                                         {"Content-Type": body_type[1]} if body_type[1] else {}, body_type[0]),
        bodies_and_types, tokens, queries)


# --- sending --------------------------------------------------------------------------------


class Sender:
    """Keep-alive connections to the edge, used by ``CONNECTIONS`` green threads at once."""

    def __init__(self, port):
        self.port = port
        self.connections = LightQueue()
        for _ in range(CONNECTIONS):
            self.connections.put(None)
        self.pool = GreenPool(CONNECTIONS)

    def _one(self, request):
        method, path, headers, body = request
        connection = self.connections.get()
        try:
            for attempt in (1, 2):
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                try:
                    connection.request(method, path, body=body, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    if response.will_close:
                        connection.close()
                        connection = None
                    return response.status
                except (http.client.HTTPException, OSError):
                    connection.close()
                    connection = None
                    if attempt == 2:
                        raise
        finally:
            self.connections.put(connection)

    def send(self, batch):
        return list(self.pool.imap(self._one, batch))


def fuzz(sender, strategy, requests_total):
    counts = Counter()

    @settings(max_examples=requests_total // BATCH, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.lists(strategy, min_size=BATCH, max_size=BATCH))
    def run(batch):
        statuses = sender.send(batch)
        counts.update(statuses)
        failing = [(request, status) for request, status in zip(batch, statuses) if status >= 500]
        assert not failing, f"answers ≥ 500: {failing[:3]}"

    run()
    return counts


# --- state ----------------------------------------------------------------------------------


def payment_state(stack):
    with stack.databases["payment"].engine.connect() as connection:
        rows = connection.execute(sa.select(payments.c.txn_ref, payments.c.status, payments.c.gateway_txn_no,
                                            payments.c.paid_at, payments.c.updated_at).order_by(payments.c.id)).all()
        history = connection.execute(sa.select(sa.func.count()).select_from(payment_history)).scalar_one()
    return rows, history


def notify_state(stack):
    table = NotificationRow.__table__
    with stack.databases["notify"].engine.connect() as connection:
        return connection.execute(sa.select(table.c.id, table.c.status, table.c.provider_reference,
                                            table.c.updated_at).order_by(table.c.id)).all()


def settled(stack):
    """Both databases, once two looks a second apart agree (receipts and timers of earlier tests done)."""
    previous = None
    for _ in range(30):
        current = (payment_state(stack), notify_state(stack))
        if current == previous and all(row.status in ("sent", "delivered") for row in current[1]):
            return current
        previous = current
        eventlet.sleep(1.0)
    raise AssertionError("the services did not settle before fuzzing")


def test_ten_thousand_generated_requests_to_each_callback_change_nothing_and_never_answer_5xx(edge_stack, rpc):
    stack = edge_stack
    vnpay_payment = start_payment(stack, rpc, "vnpay")
    momo_payment = start_payment(stack, rpc, "momo")
    signed_vnpay = signed_vnpay_ipn(vnpay_payment)
    momo_body = {"partnerCode": MOMO_PARTNER_CODE, "orderId": momo_payment["txn_ref"],
                 "requestId": momo_payment["txn_ref"], "amount": momo_payment["amount"],
                 "orderInfo": "Thanh toan le phi", "orderType": "momo_wallet", "transId": 4100000001,
                 "resultCode": 0, "message": "Successful.", "payType": "qr",
                 "responseTime": int(time.time() * 1000), "extraData": ""}
    momo_body["signature"] = hmac_sha256(MOMO_SECRET_KEY,
                                         raw_signature({**momo_body, "accessKey": MOMO_ACCESS_KEY}, IPN_FIELDS))
    before = settled(stack)
    notification_ids = [row.id for row in before[1]] or [str(uuid.uuid4())]

    sender = Sender(stack.edge.port)
    report = {}
    started = time.monotonic()
    for name, strategy in (("GET /callbacks/vnpay/ipn", vnpay_requests(signed_vnpay)),
                           ("POST /callbacks/momo/ipn", momo_requests(momo_body)),
                           ("POST /callbacks/esms/<token>", esms_requests(notification_ids))):
        endpoint_started = time.monotonic()
        report[name] = fuzz(sender, strategy, REQUESTS_PER_ENDPOINT)
        counts = report[name]
        print(f"\n[fuzz] {name}: {sum(counts.values())} requests in {time.monotonic() - endpoint_started:.0f} s; "
              f"answers {dict(sorted(counts.items()))}; >= 500: {sum(n for s, n in counts.items() if s >= 500)}")
    after = (payment_state(stack), notify_state(stack))
    print(f"[fuzz] {sum(sum(c.values()) for c in report.values())} requests in {time.monotonic() - started:.0f} s; "
          f"state changes: payments {int(after[0] != before[0])}, notifications {int(after[1] != before[1])}")

    for name, counts in report.items():
        assert sum(counts.values()) >= REQUESTS_PER_ENDPOINT, name
        assert not any(status >= 500 for status in counts), (name, counts)
    assert 204 not in report["POST /callbacks/momo/ipn"]  # no tampered MoMo IPN was accepted
    assert after[0] == before[0], "an unsigned or tampered request changed a payment"
    assert after[1] == before[1], "an unsigned or forged receipt changed a notification"
    # the signed originals are still good: the fuzz did not just break the endpoints
    assert sender.send([("GET", "/callbacks/vnpay/ipn?" + form_encode(signed_vnpay.items()), {}, b"")]) == [200]
    assert status_after_ipn(stack, vnpay_payment["txn_ref"]) == "succeeded"


def status_after_ipn(stack, txn_ref):
    with stack.databases["payment"].engine.connect() as connection:
        return connection.execute(sa.select(payments.c.status).where(payments.c.txn_ref == txn_ref)).scalar_one()
