"""The framework's own ceilings, measured in the same run as the figures compared with them.

- ``@http`` handler doing one INSERT + COMMIT, 50 connections (``wrk`` when installed, else a
  Python client of 50 green threads with keep-alive sessions);
- Nameko ``EventDispatcher`` → ``@event_handler``: 8 RPC workers of ``bench_source`` dispatch,
  one confirm per event, and the figure is events handled per second by ``bench_ceiling``;
- RPC ``echo`` calls per second from 8 clients, each with its own ``ClusterRpcProxy``;
- raw pika publishing with pipelined confirms (500 in flight) to a durable queue.

The two services (``bench/ceilings.py``) run as ``nameko run`` processes of their own, with
Nameko's default 10 workers, on a database of their own.
"""
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import eventlet
import pika
import requests
import sqlalchemy as sa
import yaml
from nameko.exceptions import UnknownService
from nameko.standalone.rpc import ClusterRpcProxy

from bench.ceilings import metadata
from bench.sections.notify_latency import process_cpu_seconds
from portal_shared.relay import ConfirmingPublisher
from portal_shared.testing.plugin import FreshDatabase
from tests.helpers import free_port

NAME = "framework_ceilings"
ROOT = Path(__file__).resolve().parents[2]
HTTP_CONNECTIONS = 50
HTTP_SECONDS = int(os.environ.get("BENCH_HTTP_SECONDS", "10"))
DISPATCHED_EVENTS = int(os.environ.get("BENCH_DISPATCHED_EVENTS", "4000"))
RPC_CLIENTS = 8
RPC_SECONDS = int(os.environ.get("BENCH_RPC_SECONDS", "8"))
PIKA_MESSAGES = int(os.environ.get("BENCH_PIKA_MESSAGES", "30000"))
PIKA_WINDOW = 500
BODY = '{"event_id": "%s", "occurred_at": "2026-12-04T10:00:00+07:00", "text": "Hồ sơ đã được tiếp nhận", "n": %d}'


class NamekoProcess:
    def __init__(self, target, config, log_dir):
        config_path = Path(log_dir) / f"{target.split(':')[1]}.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log = open(Path(log_dir) / f"{target.split(':')[1]}.log", "wb")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.popen = subprocess.Popen(
            [str(Path(sys.executable).parent / "nameko"), "run", "--config", str(config_path), target],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self):
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.log.close()


def _wait_http(url, process, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"bench service exited: see {process.log.name}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"bench service not answering {url}")


def _wait_rpc(amqp_uri, process, timeout=60):
    deadline = time.time() + timeout
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=60) as rpc:
        while True:
            if process.popen.poll() is not None:
                raise RuntimeError(f"bench service exited: see {process.log.name}")
            try:
                return rpc.bench_source.dispatch_events(1, 0)
            except UnknownService:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)


def _seconds(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def http_insert(url):
    """Requests/s and latency percentiles of POST /insert at 50 connections."""
    if shutil.which("wrk"):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write('wrk.method = "POST"\nwrk.body = "ho so 1"\n')
        output = subprocess.run(
            ["wrk", "-t2", f"-c{HTTP_CONNECTIONS}", f"-d{HTTP_SECONDS}s", "--latency", "-s", script.name, url],
            capture_output=True, text=True, timeout=HTTP_SECONDS + 60).stdout
        os.unlink(script.name)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        socket_errors = re.search(r"Socket errors: (.*)", output)
        return {
            "client": "wrk",
            "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p50_ms": round(_seconds(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1)) * 1000, 1),
            "p99_ms": round(_seconds(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1)) * 1000, 1),
            "errors": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else None,
        }
    latencies, errors = [], [0]
    deadline = time.time() + HTTP_SECONDS

    def client():
        with requests.Session() as session:
            while time.time() < deadline:
                started = time.perf_counter()
                if session.post(url, data="ho so 1", timeout=30).status_code != 201:
                    errors[0] += 1
                latencies.append(time.perf_counter() - started)

    pool = eventlet.GreenPool(HTTP_CONNECTIONS)
    for _ in range(HTTP_CONNECTIONS):
        pool.spawn(client)
    pool.waitall()
    latencies.sort()
    return {"client": "python", "requests_per_second": round(len(latencies) / HTTP_SECONDS, 1),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1), "errors": errors[0]}


def dispatcher_events(amqp_uri, handled_url):
    """Events/s from ``EventDispatcher`` (8 workers dispatching) to the handler."""
    before = int(requests.get(handled_url, timeout=10).text)
    per_client = DISPATCHED_EVENTS // RPC_CLIENTS
    started = time.perf_counter()

    def dispatch(index):
        with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=120) as rpc:
            rpc.bench_source.dispatch_events(per_client, index * per_client)

    pool = eventlet.GreenPool(RPC_CLIENTS)
    list(pool.imap(dispatch, range(RPC_CLIENTS)))
    total = per_client * RPC_CLIENTS
    deadline = time.time() + 120
    while int(requests.get(handled_url, timeout=10).text) - before < total:
        if time.time() > deadline:
            raise RuntimeError("dispatched events not all handled")
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    return {"events": total, "seconds": round(seconds, 2), "events_per_second": round(total / seconds, 1)}


def rpc_calls(amqp_uri):
    calls = [0]
    deadline = time.time() + RPC_SECONDS

    def client(_):
        with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=60) as rpc:
            rpc.bench_ceiling.echo(0)  # connected before the clock matters
            while time.time() < deadline:
                rpc.bench_ceiling.echo(1)
                calls[0] += 1

    started = time.perf_counter()
    pool = eventlet.GreenPool(RPC_CLIENTS)
    list(pool.imap(client, range(RPC_CLIENTS)))
    return {"clients": RPC_CLIENTS, "calls": calls[0],
            "calls_per_second": round(calls[0] / (time.perf_counter() - started), 1)}


def raw_pika(amqp_uri):
    """Messages/s published to a durable queue with up to 500 confirms outstanding."""
    exchange = "bench_pika.events"
    setup = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = setup.channel()
    channel.exchange_declare(exchange, "topic", durable=True)
    queue = f"bench-pika-{uuid.uuid4().hex[:6]}"
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, exchange, "#")
    publisher = ConfirmingPublisher(amqp_uri, exchange)
    publisher.open()
    counter = itertools.count()
    started = time.perf_counter()
    for _ in range(PIKA_MESSAGES):
        if len(publisher.unconfirmed) >= PIKA_WINDOW:
            publisher.wait(lambda: len(publisher.unconfirmed) < PIKA_WINDOW, 30)
        number = next(counter)
        publisher.publish("bench_pinged", (BODY % (uuid.uuid4(), number)).encode(), {}, str(number))
    confirmed = publisher.wait(lambda: not publisher.unconfirmed, 60)
    seconds = time.perf_counter() - started
    publisher.close()
    depth = channel.queue_declare(queue, durable=True, passive=True).method.message_count
    channel.queue_delete(queue)
    channel.exchange_delete(exchange)
    setup.close()
    if not confirmed or depth != PIKA_MESSAGES:
        raise RuntimeError(f"raw pika: confirmed={confirmed}, queued {depth} of {PIKA_MESSAGES}")
    return {"messages": PIKA_MESSAGES, "seconds": round(seconds, 2),
            "messages_per_second": round(PIKA_MESSAGES / seconds, 1)}


def run(stack, args):
    log_dir = tempfile.mkdtemp(prefix="bench-ceilings-")
    database = FreshDatabase("dossier")
    metadata.create_all(database.engine)
    port = free_port()
    config = {"AMQP_URI": stack.amqp_uri, "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}",
              "BENCH_DATABASE_URL": database.url, "max_workers": 10}
    ceiling = NamekoProcess("bench.ceilings:Ceiling", config, log_dir)
    source = None
    try:
        _wait_http(f"http://127.0.0.1:{port}/handled", ceiling)
        source = NamekoProcess("bench.ceilings:Source", {**config, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"},
                               log_dir)
        _wait_rpc(stack.amqp_uri, source)
        result = {"http_insert": http_insert(f"http://127.0.0.1:{port}/insert")}
        # the CPU Nameko itself spends per event and per call: both Nameko processes and this client process
        used = lambda: sum(map(process_cpu_seconds, (ceiling.popen.pid, source.popen.pid, os.getpid())))  # noqa: E731
        before = used()
        result["event_dispatcher"] = dispatcher_events(stack.amqp_uri, f"http://127.0.0.1:{port}/handled")
        middle = used()
        result["rpc"] = rpc_calls(stack.amqp_uri)
        after = used()
        result["event_dispatcher"]["cpu_ms_per_event"] = round(
            (middle - before) * 1000 / result["event_dispatcher"]["events"], 3)
        result["rpc"]["cpu_ms_per_call"] = round((after - middle) * 1000 / max(1, result["rpc"]["calls"]), 3)
        result["raw_pika"] = raw_pika(stack.amqp_uri)
        with database.engine.connect() as connection:
            result["http_insert"]["rows_inserted"] = connection.execute(
                sa.select(sa.func.count()).select_from(metadata.tables["bench_insert"])).scalar_one()
    finally:
        for process in (source, ceiling):
            if process is not None:
                process.stop()
        database.drop()
    http_figure = result["http_insert"]
    result["table"] = [
        ("@http one INSERT + COMMIT, 50 connections (/s)", http_figure["requests_per_second"],
         f"ceiling (p99 {http_figure['p99_ms']} ms)"),
        ("EventDispatcher → handler (events/s; Nameko CPU per event)",
         f"{result['event_dispatcher']['events_per_second']}; {result['event_dispatcher']['cpu_ms_per_event']} ms",
         "ceiling"),
        (f"RPC, {RPC_CLIENTS} clients (calls/s; Nameko CPU per call, client + server)",
         f"{result['rpc']['calls_per_second']}; {result['rpc']['cpu_ms_per_call']} ms", "ceiling"),
        ("raw pika, pipelined confirms (messages/s)", result["raw_pika"]["messages_per_second"], "ceiling"),
    ]
    # the sections after this one compare their figures with these
    stack.ceilings = {"http_insert": http_figure["requests_per_second"], "rpc": result["rpc"]["calls_per_second"],
                      "event_dispatcher": result["event_dispatcher"]["events_per_second"],
                      "raw_pika": result["raw_pika"]["messages_per_second"],
                      "cpu_ms_per_event": result["event_dispatcher"]["cpu_ms_per_event"],
                      "cpu_ms_per_rpc": result["rpc"]["cpu_ms_per_call"]}
    return result
