"""Signed VNPay IPNs at 50 connections, answered ``00``, with the rest of the pipeline running.

Every pending payment ``submit_accept_pay`` left gets one success IPN as VNPay sends it (GET, the
``vnp_*`` fields signed with HMAC-SHA512 by ``payment.gateways.vnpay.sign_params``, the stack's
merchant code and secret). 50 green threads, each on its own keep-alive connection of a minimal
HTTP/1.1 client (cheaper than ``requests`` on a shared 2-core machine), send them as fast as they are
answered. While they run, payment's relay publishes ``payment_succeeded`` and dossier and notify
consume: the pipeline is running. The figures: IPNs answered ``00`` per second, the latency of each
request (p50 / p99), any other answer.
"""
import json
import socket
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode, urlparse

import eventlet

from bench.profiling import Profiler
from bench.sections.notify_latency import cpu_seconds, percentile
from bench.sections.submit_accept_pay import ms
from payment.gateways.vnpay import sign_params

NAME = "ipn"
REQUIRES = ("submit_accept_pay",)
CONNECTIONS = 50
VN_TZ = timezone(timedelta(hours=7))


def ipn_params(paid, i, tmn_code, secret):
    """The fields VNPay would send for a successful payment of ``paid``, signed."""
    params = {
        "vnp_TmnCode": tmn_code, "vnp_Amount": str(paid["amount"] * 100), "vnp_BankCode": "NCB",
        "vnp_BankTranNo": f"VNP{14_000_000 + i}", "vnp_CardType": "ATM",
        "vnp_OrderInfo": f"Thanh toan le phi ho so {paid['code']}",
        "vnp_PayDate": datetime.now(VN_TZ).strftime("%Y%m%d%H%M%S"), "vnp_ResponseCode": "00",
        "vnp_TransactionNo": str(14_000_000 + i), "vnp_TransactionStatus": "00", "vnp_TxnRef": paid["txn_ref"],
    }
    params["vnp_SecureHash"] = sign_params(params, secret)
    return params


def signed_ipn(paid, i, tmn_code, secret):
    """The query string of ``ipn_params``, as VNPay sends it."""
    return urlencode(ipn_params(paid, i, tmn_code, secret))


class KeepAliveClient:
    """GET over one persistent connection; reconnects when the server closes it."""

    def __init__(self, host, port):
        self.address = (host, port)
        self.sock = self.reader = None

    def get(self, target):
        for attempt in (1, 2):
            if self.sock is None:
                self.sock = socket.create_connection(self.address, timeout=60)
                self.reader = self.sock.makefile("rb")
            try:
                self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {self.address[0]}\r\n\r\n".encode())
                return self._response()
            except (ConnectionError, OSError, ValueError):
                self.close()
                if attempt == 2:
                    raise

    def _response(self):
        status_line = self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length, closing = 0, False
        while True:
            line = self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                closing = True
        body = self.reader.read(length)
        if closing:
            self.close()
        return status, body

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = self.reader = None


def send_all(url, targets, connections=CONNECTIONS):
    """``(seconds, [(index, status, body, latency)])``: every target GET once over ``connections`` connections."""
    parsed = urlparse(url)
    queue = list(reversed(list(enumerate(targets))))
    answers = []

    def client():
        connection = KeepAliveClient(parsed.hostname, parsed.port)
        try:
            while queue:
                index, target = queue.pop()
                started = time.perf_counter()
                try:
                    status, body = connection.get(target)
                except Exception as exc:  # counted, never hidden
                    status, body = None, repr(exc).encode()
                answers.append((index, status, body, time.perf_counter() - started))
        finally:
            connection.close()

    started = time.perf_counter()
    pool = eventlet.GreenPool(connections)
    for _ in range(connections):
        pool.spawn(client)
    pool.waitall()
    return time.perf_counter() - started, answers


def rsp_code(status, body):
    if status != 200:
        return f"HTTP {status}"
    try:
        return json.loads(body)["RspCode"]
    except (ValueError, KeyError):
        return "unreadable"


def ipn_targets(stack, paid, first_index=0):
    env = stack.base_env()
    return [f"/callbacks/vnpay/ipn?{signed_ipn(one, i, env['VNPAY_TMN_CODE'], env['VNPAY_HASH_SECRET'])}"
            for i, one in enumerate(paid, start=first_index)]


def run(stack, args):
    # the last ``--drain-backlog`` paid dossiers are kept for ``dossier_drain``'s backlog
    backlog = max(0, min(getattr(args, "drain_backlog", 0), len(stack.paid) // 2))
    paid = stack.paid[:len(stack.paid) - backlog]
    stack.backlog_paid = stack.paid[len(paid):]
    stack.backlog_first_index = len(paid)
    targets = ipn_targets(stack, paid)
    profiler = Profiler(stack, getattr(args, "profile", None), getattr(args, "profile_services", "payment"))
    cpu_before = cpu_seconds(stack)
    stack.ipn_started = time.time()
    seconds, answers = send_all(stack.url("payment"), targets)
    stack.ipn_finished = time.time()
    cpu_after = cpu_seconds(stack)
    profiles = profiler.stop()
    codes = {}
    stack.ipn_paid = []  # the dossiers whose IPN was answered 00: ``dossier_drain`` waits for these
    for index, status, body, _ in answers:
        code = rsp_code(status, body)
        codes[code] = codes.get(code, 0) + 1
        if code == "00":
            stack.ipn_paid.append(paid[index]["code"])
    latencies = [latency for _, _, _, latency in answers]
    # CPU of each process while the IPNs ran (the pipeline's work on them included), per IPN sent: unlike
    # the rates, this barely depends on what else the machine is doing
    cpu_ms_per_ipn = {label: round((cpu_after[label] - cpu_before[label]) * 1000 / max(1, len(targets)), 2)
                      for label in cpu_before if cpu_before[label] is not None and cpu_after.get(label) is not None}
    answered_00 = codes.get("00", 0)
    figures = {
        "ipns": len(targets),
        "connections": CONNECTIONS,
        "client": "python keep-alive, eventlet",
        "seconds": round(seconds, 2),
        "answers": codes,
        "answered_00_per_second": round(answered_00 / seconds, 1),
        "latency_ms": {"p50": ms(percentile(latencies, 0.5)), "p99": ms(percentile(latencies, 0.99)),
                       "max": ms(max(latencies) if latencies else None)},
        "cpu_ms_per_ipn": cpu_ms_per_ipn,
        "profiles": profiles,
        "first_errors": [body.decode(errors="replace")[:200] for _, status, body, _ in answers if status != 200][:3],
    }
    http_ceiling = getattr(stack, "ceilings", {}).get("http_insert")
    if http_ceiling:
        figures["vs_http_insert_ceiling"] = round(figures["answered_00_per_second"] / http_ceiling, 3)
    figures["table"] = [
        (f"signed VNPay IPNs answered 00, {CONNECTIONS} connections (/s)",
         f"{figures['answered_00_per_second']} ({answered_00} of {len(targets)}; "
         f"{figures.get('vs_http_insert_ceiling')} × @http ceiling)", "≥ 400"),
        ("IPN latency p50 / p99", f"{figures['latency_ms']['p50']} / {figures['latency_ms']['p99']} ms",
         "p99 ≤ 150 ms"),
        ("CPU ms per IPN while they ran, per process", ", ".join(f"{k} {v}" for k, v in cpu_ms_per_ipn.items()), ""),
    ]
    return figures
