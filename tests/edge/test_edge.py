"""The public callback edge against the running processes, through the nginx of infra/ (and without it).

CONTRACT sections 3.2 and 5; issue "Safe on the internet". Every figure a test
asserts on is also printed (``-s`` shows them).
"""
import socket
import time
import uuid
from datetime import datetime, timedelta, timezone

import eventlet
import requests
import sqlalchemy as sa

from payment.gateways.vnpay import sign_params
from payment.orm import payment_history, payments
from tests.edge.conftest import (
    ESMS_TOKEN,
    SERVICE_DEADLINE_SECONDS,
    VNPAY_HASH_SECRET,
    VNPAY_TMN_CODE,
    requires_nginx,
)
from tests.edge.nginx import Edge
from tests.helpers import free_port

pytestmark = requires_nginx
RETURN_URL = "http://127.0.0.1:9/cong-dvc/thanh-toan/ket-qua"


def wait_until(predicate, timeout=20.0, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        eventlet.sleep(0.1)


def service_address(stack, name):
    return ("127.0.0.1", stack.ports[f"{name}.0"])


def edge_address(stack):
    return ("127.0.0.1", stack.edge.port)


def timed(function, *args, **kwargs):
    started = time.monotonic()
    result = function(*args, **kwargs)
    return result, time.monotonic() - started


def healthz(stack, name):
    return requests.get(f"http://127.0.0.1:{stack.ports[f'{name}.0']}/healthz", timeout=5).status_code


def slow_upload(address, path="/callbacks/momo/ipn", declared=1000, sent=b"{"):
    """Headers announcing ``declared`` bytes, then only ``sent`` of them: the connection stalls."""
    sock = socket.create_connection(address, timeout=30)
    sock.sendall((f"POST {path} HTTP/1.1\r\nHost: edge.test\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {declared}\r\n\r\n").encode() + sent)
    return sock


def closed_after(sock, started, limit=30.0):
    """Seconds from ``started`` until the peer closed ``sock`` (reading whatever it answered), and the answer."""
    sock.settimeout(limit)
    received = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    finally:
        sock.close()
    return time.monotonic() - started, received


def charge_for_payment(stack, rpc):
    """A dossier whose fee of 200,000 VND is due at the payment service."""
    applicant = {"full_name": "Nguyễn Văn An", "id_number": f"{uuid.uuid4().int % 10**12:012d}",
                 "phone": f"091{uuid.uuid4().int % 10**7:07d}", "email": "an@example.vn"}
    code = rpc.dossier.submit_dossier("LLTP-01", applicant, {"purpose": "edge"})["code"]
    rpc.dossier.act_on_dossier(code, "accept", "can-bo-edge")
    wait_until(lambda: rpc.dossier.get_dossier(code)["status"] == "payment_requested", message="payment_requested")
    return code


def start_payment(stack, rpc, gateway="vnpay"):
    code = charge_for_payment(stack, rpc)

    def started():
        try:
            return rpc.payment.start_payment(code, gateway, RETURN_URL, "203.0.113.7")
        except Exception as exc:  # NoPaymentDue until payment has seen the event
            if "NoPaymentDue" not in repr(exc):
                raise
            return None

    return wait_until(started, message="the charge reaching payment")


def signed_vnpay_ipn(payment, response_code="00", transaction_status="00", **overrides):
    params = {
        "vnp_TmnCode": VNPAY_TMN_CODE, "vnp_Amount": str(payment["amount"] * 100), "vnp_BankCode": "NCB",
        "vnp_BankTranNo": "VNP14000001", "vnp_CardType": "ATM", "vnp_OrderInfo": f"Thanh toan {payment['txn_ref']}",
        "vnp_PayDate": datetime.now(timezone(timedelta(hours=7))).strftime("%Y%m%d%H%M%S"),
        "vnp_ResponseCode": response_code, "vnp_TransactionNo": "14000001",
        "vnp_TransactionStatus": transaction_status, "vnp_TxnRef": payment["txn_ref"], **overrides,
    }
    params = {key: value for key, value in params.items() if value is not None}
    params["vnp_SecureHash"] = sign_params(params, VNPAY_HASH_SECRET)
    return params


def history_of(stack, txn_ref):
    with stack.databases["payment"].engine.connect() as connection:
        return connection.execute(
            sa.select(payment_history.c.old_status, payment_history.c.new_status, payment_history.c.source)
            .where(payment_history.c.txn_ref == txn_ref).order_by(payment_history.c.id)).all()


def status_of(stack, txn_ref):
    with stack.databases["payment"].engine.connect() as connection:
        return connection.execute(sa.select(payments.c.status).where(payments.c.txn_ref == txn_ref)).scalar_one()


# --- slow and oversized requests ------------------------------------------------------------


def test_ten_slow_uploads_freeze_nothing_and_are_closed_by_the_deadlines(edge_stack, rpc):
    stack = edge_stack
    rpc.payment.list_payments("WARM-UP")  # the proxy's reply queue exists before the clock starts
    started = time.monotonic()
    through_edge = [slow_upload(edge_address(stack)) for _ in range(10)]
    at_the_service = [slow_upload(service_address(stack, "payment")) for _ in range(12)]  # > max_workers (10)
    trickling = socket.create_connection(service_address(stack, "payment"), timeout=30)
    trickling.sendall(b"POST /callbacks/momo/ipn HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
    slow_headers = socket.create_connection(service_address(stack, "payment"), timeout=30)
    slow_headers.sendall(b"POST /callbacks/momo/ipn HTTP/1.1\r\nHost: x\r\n")
    eventlet.sleep(0.3)

    status, health_seconds = timed(healthz, stack, "payment")
    answer, rpc_seconds = timed(rpc.payment.list_payments, "NO-SUCH-DOSSIER")
    print(f"\n[edge] 10 slow uploads via nginx + 12 at payment: /healthz {health_seconds * 1000:.0f} ms, "
          f"RPC list_payments {rpc_seconds * 1000:.0f} ms")
    assert status == 200 and health_seconds < 1.0
    assert answer == [] and rpc_seconds < 1.0

    for _ in range(6):  # one byte every 0.5 s: a per-read timeout would never fire, the total deadline does
        try:
            trickling.sendall(b" ")
        except OSError:
            break
        eventlet.sleep(0.5)
    closures = [eventlet.spawn(closed_after, sock, started) for sock in at_the_service + [trickling, slow_headers]]
    edge_closures = [eventlet.spawn(closed_after, sock, started) for sock in through_edge]
    service_times = [closure.wait() for closure in closures]
    edge_times = [closure.wait() for closure in edge_closures]
    print(f"[edge] service closed its slow connections after {max(t for t, _ in service_times):.1f} s "
          f"(deadline {SERVICE_DEADLINE_SECONDS} s); nginx after {max(t for t, _ in edge_times):.1f} s "
          f"(client_body_timeout 5 s)")
    for seconds, answer in service_times:
        assert seconds < SERVICE_DEADLINE_SECONDS + 4, seconds
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:80]
    for seconds, answer in edge_times:
        assert seconds < 5 + 4, seconds
        assert answer == b"" or b" 408 " in answer.split(b"\r\n", 1)[0], answer[:80]
    assert healthz(stack, "payment") == 200


def test_a_one_mebibyte_body_is_refused_at_once_without_being_read(edge_stack):
    stack = edge_stack
    for name, address in (("nginx", edge_address(stack)), ("payment", service_address(stack, "payment")),
                          ("notify", service_address(stack, "notify"))):
        path = f"/callbacks/esms/{ESMS_TOKEN}" if name == "notify" else "/callbacks/momo/ipn"
        started = time.monotonic()
        sock = slow_upload(address, path=path, declared=1024 * 1024, sent=b"{" + b" " * 65535)
        sock.settimeout(5)
        first = sock.recv(200)
        seconds = time.monotonic() - started
        sock.close()
        status_line = first.split(b"\r\n", 1)[0].decode()
        print(f"\n[edge] 1 MiB body to {name}: {status_line} in {seconds * 1000:.0f} ms")
        assert first.split(b" ")[1] in (b"413", b"400") and seconds < 1.0
    # a chunked body gives no length up front: read up to the limit only, then refused
    chunk = b"x" * 8192
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(16)) + b"0\r\n\r\n"
    sock = socket.create_connection(service_address(stack, "payment"), timeout=10)
    sock.sendall(b"POST /callbacks/momo/ipn HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert sock.recv(200).split(b" ")[1] == b"413"
    sock.close()


def test_only_the_three_callback_paths_are_on_the_internet_side(edge_stack):
    edge = edge_stack.edge.url
    for path in ("/healthz", "/readyz", "/metrics", "/callbacks/esms", "/callbacks/esms/", "/", "/callbacks/x"):
        assert requests.get(edge + path, timeout=5).status_code == 404, path
    assert requests.post(f"{edge}/callbacks/vnpay/ipn", timeout=5).status_code == 403
    assert requests.get(f"{edge}/callbacks/momo/ipn", timeout=5).status_code == 403
    assert requests.get(f"{edge}/callbacks/esms/{ESMS_TOKEN}", timeout=5).status_code == 403
    # the callbacks themselves get through
    assert requests.get(f"{edge}/callbacks/vnpay/ipn", timeout=5).json()["RspCode"] == "97"
    assert requests.post(f"{edge}/callbacks/momo/ipn", json={}, timeout=5).status_code == 400
    # and the probes answer on each service's own address
    for service in ("dossier", "payment", "notify"):
        base = f"http://127.0.0.1:{edge_stack.ports[f'{service}.0']}"
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        assert requests.get(f"{base}/readyz", timeout=5).json()["status"] == "ready"
        assert "portal_worker_calls_total" in requests.get(f"{base}/metrics", timeout=5).text


def test_the_edge_limits_each_client_rate_and_connections(edge_stack, tmp_path):
    stack = edge_stack
    strict = Edge(tmp_path / "strict", free_port(), f"127.0.0.1:{stack.ports['payment.0']}",
                  f"127.0.0.1:{stack.ports['notify.0']}", rate_per_second=5, burst=5, connections_per_client=3).start()
    try:
        with requests.Session() as session:
            codes = [session.get(f"{strict.url}/callbacks/vnpay/ipn", timeout=5).status_code for _ in range(30)]
        print(f"\n[edge] 30 requests at once against 5 r/s burst 5: {codes.count(200)} answered, "
              f"{codes.count(429)} refused 429")
        assert codes.count(429) >= 15 and codes.count(200) >= 5
        eventlet.sleep(2)
        held = [slow_upload(("127.0.0.1", strict.port)) for _ in range(3)]
        eventlet.sleep(0.3)
        assert requests.post(f"{strict.url}/callbacks/momo/ipn", json={}, timeout=5).status_code == 429
        for sock in held:
            sock.close()
    finally:
        strict.stop()


# --- the callback pool ----------------------------------------------------------------------


def test_callbacks_stuck_in_the_database_take_their_own_pool_not_rpc_or_health(edge_stack, rpc):
    stack = edge_stack
    payment = start_payment(stack, rpc)
    params = signed_vnpay_ipn(payment)
    url = f"{stack.edge.url}/callbacks/vnpay/ipn"
    engine = stack.databases["payment"].engine
    with engine.connect() as holder:
        transaction = holder.begin()
        holder.execute(sa.select(payments.c.id).where(payments.c.txn_ref == payment["txn_ref"]).with_for_update())
        ipns = [eventlet.spawn(requests.get, url, params=params, timeout=30) for _ in range(15)]
        eventlet.sleep(1.0)  # 4 callback workers wait on the row lock, 11 requests wait for a slot
        status, health_seconds = timed(healthz, stack, "payment")
        answer, rpc_seconds = timed(rpc.payment.get_payment, payment["txn_ref"])
        print(f"\n[edge] 15 IPNs stuck on a row lock: /healthz {health_seconds * 1000:.0f} ms, "
              f"RPC get_payment {rpc_seconds * 1000:.0f} ms")
        assert status == 200 and health_seconds < 1.0
        assert answer["status"] == "pending" and rpc_seconds < 1.0
        transaction.commit()
    codes = sorted(ipn.wait().json()["RspCode"] for ipn in ipns)
    assert codes == ["00"] + ["02"] * 14
    assert status_of(stack, payment["txn_ref"]) == "succeeded"


# --- no lock across the network -------------------------------------------------------------


def test_an_ipn_arriving_while_the_gateway_query_hangs_is_answered_within_a_second(edge_stack, rpc):
    stack = edge_stack
    payment = start_payment(stack, rpc)
    held = stack.vnpay_api.hold(payment["txn_ref"])
    held["amount"] = payment["amount"]
    assert held["in_flight"].wait(15), "the timer never queried the payment"  # the query now hangs
    answer, seconds = timed(requests.get, f"{stack.edge.url}/callbacks/vnpay/ipn",
                            params=signed_vnpay_ipn(payment), timeout=30)
    print(f"\n[edge] IPN while querydr for the same payment hangs: RspCode {answer.json()['RspCode']} "
          f"in {seconds * 1000:.0f} ms")
    assert answer.json() == {"RspCode": "00", "Message": "Confirm Success"} and seconds < 1.0
    stack.vnpay_api.release(payment["txn_ref"], "02")  # the late answer says failed: applied to nothing
    wait_until(lambda: sum(1 for r in stack.vnpay_api.requests if r.get("vnp_TxnRef") == payment["txn_ref"]) >= 1)
    eventlet.sleep(2.5)
    assert status_of(stack, payment["txn_ref"]) == "succeeded"
    assert history_of(stack, payment["txn_ref"]) == [(None, "pending", "create"), ("pending", "succeeded", "ipn")]


def test_stricter_ipn_checks_through_the_edge(edge_stack, rpc):
    stack = edge_stack
    payment = start_payment(stack, rpc)
    url = f"{stack.edge.url}/callbacks/vnpay/ipn"
    other_merchant = signed_vnpay_ipn(payment, vnp_TmnCode="OTHERTMN")
    assert requests.get(url, params=other_merchant, timeout=10).json()["RspCode"] == "01"
    no_status = signed_vnpay_ipn(payment, transaction_status=None)
    assert requests.get(url, params=no_status, timeout=10).json()["RspCode"] == "99"
    assert status_of(stack, payment["txn_ref"]) == "pending"
    assert history_of(stack, payment["txn_ref"]) == [(None, "pending", "create")]


# --- eSMS receipts --------------------------------------------------------------------------


def faults(stack, *plans):
    requests.delete(f"{stack.sandbox_url}/_sandbox/faults", timeout=5).raise_for_status()
    for provider in plans:
        requests.post(f"{stack.sandbox_url}/_sandbox/faults", json={"provider": provider, "code": "http_500",
                                                                    "times": -1}, timeout=5).raise_for_status()


def notification(rpc, reference):
    return rpc.notify.get_notifications(reference)[0]


def sandbox_sms(stack, phone):
    return [m for m in stack.outbox(channel="sms") if m["to"].endswith(phone[1:])]


def test_forged_receipts_change_nothing_and_the_message_still_reaches_the_citizen(edge_stack, rpc):
    stack = edge_stack
    receipts = f"{stack.edge.url}/callbacks/esms"
    params = {"dossier_code": "EDGE-RCPT", "procedure_name": "Đăng ký khai sinh"}

    # a message that went out through SpeedSMS: an eSMS receipt naming it, even with its id, is no receipt for it
    faults(stack, "esms")
    phone_speedsms = f"091{uuid.uuid4().int % 10**7:07d}"
    rpc.notify.send_notification("sms", phone_speedsms, "processed", params, "EDGE-RCPT-1")
    # the delivery pipeline sends it after the RPC has answered
    wait_until(lambda: notification(rpc, "EDGE-RCPT-1")["status"] == "sent", timeout=30,
               message="the message sent through SpeedSMS")
    other = notification(rpc, "EDGE-RCPT-1")
    assert other["provider"] == "speedsms"
    tran_id = sandbox_sms(stack, phone_speedsms)[0]["meta"]["tran_id"]
    answer = requests.post(f"{receipts}/{ESMS_TOKEN}", json={"RequestId": other["id"], "SMSID": str(tran_id),
                                                             "SendStatus": 4}, timeout=5)
    assert answer.status_code == 200 and answer.json() == {"status": "received"}
    assert notification(rpc, "EDGE-RCPT-1")["status"] == "sent"

    # both providers down: the message waits for its retry, and forged receipts do not mark it delivered
    faults(stack, "esms", "speedsms")
    phone = f"091{uuid.uuid4().int % 10**7:07d}"
    waiting = rpc.notify.send_notification("sms", phone, "processed", params, "EDGE-RCPT-2")
    wait_until(lambda: notification(rpc, "EDGE-RCPT-2")["status"] == "temporary_failure", timeout=30,
               message="both providers refused the message")
    forged = {"RequestId": waiting["id"], "SMSID": uuid.uuid4().hex, "SendStatus": 5, "SendSuccess": 1}
    assert requests.post(receipts, json=forged, timeout=5).status_code == 404  # no token: nginx has no such door
    assert requests.post(f"{receipts}/not-the-token", json=forged, timeout=5).status_code == 404
    assert requests.post(f"{receipts}/{ESMS_TOKEN}", params=forged, timeout=5).status_code == 400  # query string
    unknown = requests.post(f"{receipts}/{ESMS_TOKEN}", json=forged, timeout=5)  # right door, SMSID not eSMS's
    assert unknown.status_code == 200 and unknown.json() == {"status": "received"}
    assert requests.post(f"{receipts}/{ESMS_TOKEN}", data={**forged, "SendStatus": "5"},
                         timeout=5).json() == {"status": "received"}
    current = notification(rpc, "EDGE-RCPT-2")
    assert current["status"] in ("temporary_failure", "sending") and current["sent_at"] is None
    assert sandbox_sms(stack, phone) == []

    # the providers recover: the message goes out once, and eSMS's own receipt (through the edge) marks it
    faults(stack)
    wait_until(lambda: notification(rpc, "EDGE-RCPT-2")["status"] == "delivered", timeout=60,
               message="the message sent and its eSMS receipt applied")
    sent = sandbox_sms(stack, phone)
    assert len(sent) == 1 and sent[0]["provider"] == "esms"
    # a final state stays final, even for a receipt naming the right SMSID
    late = {"RequestId": waiting["id"], "SMSID": sent[0]["meta"]["sms_id"], "SendStatus": 4}
    assert requests.post(f"{receipts}/{ESMS_TOKEN}", json=late, timeout=5).status_code == 200
    assert notification(rpc, "EDGE-RCPT-2")["status"] == "delivered"
