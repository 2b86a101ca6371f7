"""The Procfile's processes behind Debian's nginx configured with infra/nginx (the public edge).

One stack for the package: dossier, payment, notify and the sandbox as real OS
processes (tests/e2e/harness.py), the providers' callbacks addressed to the
edge (``PAYMENT_CALLBACK_BASE_URL`` / ``NOTIFY_CALLBACK_BASE_URL``), and VNPay's
API (querydr, refund) played by ``HangingVnpayApi`` so a test can hold a
gateway query open for as long as it likes.
"""
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from payment.gateways.vnpay import QUERY_ANSWER_HASH_ORDER, pipe_hash
from tests.e2e.harness import SERVICES, Stack, Vhost
from tests.edge.nginx import Edge, nginx_binary
from tests.helpers import bearer_token, free_port

ESMS_TOKEN = "edge-receipts-3c1f0a9b7d2e4f6a8b"
VNPAY_TMN_CODE = "E2ETMN01"  # tests/e2e/harness.py
VNPAY_HASH_SECRET = "E2EVNPAYSECRET0123456789ABCDEFGH"
MOMO_PARTNER_CODE, MOMO_ACCESS_KEY = "MOMOE2E01", "e2eaccesskey"
MOMO_SECRET_KEY = "e2emomosecret0123456789abcdefghij"
SERVICE_DEADLINE_SECONDS = 2  # the services' own header/body deadlines in these stacks (production: 10)

requires_nginx = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (.ci/run installs it)")


class HangingVnpayApi:
    """VNPay's merchant API: querydr answered at once "91 not found", unless held for a txn_ref.

    ``hold(txn_ref)`` makes the next querydr for it wait until ``release(txn_ref, status)``
    (then it answers, correctly signed, that the transaction has that status).
    """

    def __init__(self):
        self.requests = []
        self._held = {}
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                api.requests.append(body)
                answer = api.answer(body)
                payload = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/merchant_webapi/api/transaction"

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        for entry in list(self._held.values()):
            entry["event"].set()
        self.server.shutdown()
        self.server.server_close()

    def hold(self, txn_ref):
        with self._lock:
            self._held[txn_ref] = {"event": threading.Event(), "status": None, "in_flight": threading.Event()}
        return self._held[txn_ref]

    def release(self, txn_ref, status):
        entry = self._held[txn_ref]
        entry["status"] = status
        entry["event"].set()

    def answer(self, body):
        txn_ref = body.get("vnp_TxnRef")
        entry = self._held.get(txn_ref)
        if body.get("vnp_Command") == "querydr" and entry is not None and not entry["event"].is_set():
            entry["in_flight"].set()
            entry["event"].wait(60)
            status = entry["status"] or "01"
            answer = {"vnp_ResponseId": uuid.uuid4().hex, "vnp_Command": "querydr", "vnp_ResponseCode": "00",
                      "vnp_Message": "OK", "vnp_TmnCode": VNPAY_TMN_CODE, "vnp_TxnRef": txn_ref,
                      "vnp_Amount": str(entry.get("amount", 0) * 100), "vnp_BankCode": "NCB",
                      "vnp_PayDate": "", "vnp_TransactionNo": "", "vnp_TransactionType": "01",
                      "vnp_TransactionStatus": status, "vnp_OrderInfo": body.get("vnp_OrderInfo", ""),
                      "vnp_PromotionCode": "", "vnp_PromotionAmount": ""}
        else:
            answer = {"vnp_ResponseId": uuid.uuid4().hex, "vnp_Command": body.get("vnp_Command", ""),
                      "vnp_ResponseCode": "91", "vnp_Message": "Transaction not found",
                      "vnp_TmnCode": VNPAY_TMN_CODE, "vnp_TxnRef": txn_ref or ""}
        order = QUERY_ANSWER_HASH_ORDER
        answer["vnp_SecureHash"] = pipe_hash(answer, order, VNPAY_HASH_SECRET)
        return answer


@pytest.fixture(scope="package")
def edge_stack(request, broker, fresh_database, tmp_path_factory):
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (.ci/run installs it)")
    databases = {service: fresh_database(service) for service in SERVICES}
    for database in databases.values():
        database.truncate()
    vhost = Vhost(*broker)
    vnpay_api = HangingVnpayApi().start()
    edge_port = free_port()
    edge_url = f"http://127.0.0.1:{edge_port}"
    work = tmp_path_factory.mktemp("edge")
    stack = Stack(vhost.amqp_uri, databases, work / "logs", replicas=1, extra_env={
        "PAYMENT_CALLBACK_BASE_URL": edge_url,
        "NOTIFY_CALLBACK_BASE_URL": edge_url,
        "ESMS_CALLBACK_TOKEN": ESMS_TOKEN,
        "VNPAY_API_URL": vnpay_api.url,
        "HTTP_HEADER_TIMEOUT_SECONDS": str(SERVICE_DEADLINE_SECONDS),
        "HTTP_BODY_TIMEOUT_SECONDS": str(SERVICE_DEADLINE_SECONDS),
        "NOTIFY_MAX_ATTEMPTS": "100",
        "SMS_PROVIDER_COOLDOWN_SECONDS": "0.5",
    })
    (work / "logs").mkdir()
    edge = None
    try:
        stack.start()
        edge = Edge(work / "nginx", edge_port, f"127.0.0.1:{stack.ports['payment.0']}",
                    f"127.0.0.1:{stack.ports['notify.0']}", rate_per_second=100000, burst=100000,
                    connections_per_client=1000).start()
        stack.edge, stack.vnpay_api, stack.databases = edge, vnpay_api, databases
        yield stack
    finally:
        if edge is not None:
            edge.stop()
        stack.stop()
        vnpay_api.stop()
        vhost.delete()


@pytest.fixture(scope="package")
def rpc(edge_stack):
    proxy = ClusterRpcProxy({"AMQP_URI": edge_stack.amqp_uri},
                            context_data={"authorization": bearer_token(ttl_seconds=3 * 3600)}, timeout=30)
    client = proxy.start()
    yield client
    proxy.stop()
