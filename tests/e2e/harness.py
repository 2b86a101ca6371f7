"""Start the Procfile's processes as real OS processes against a fresh vhost and fresh databases.

``Stack`` parses the Procfile, gives every process its own HTTP port, points
every provider at one sandbox process, waits until each service answers
``/readyz`` and kills the whole process group of each child at the end.
"""
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlparse

import requests
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SERVICES = ("dossier", "payment", "notify", "portal_sync")
E2E_ESMS_CALLBACK_TOKEN = "e2e-receipts-9f8e7d6c5b4a"

# short timers so a flow takes seconds (the production defaults are minutes)
FAST_TIMERS = {
    "PAYMENT_PENDING_CHECK_SECONDS": "1",
    "PAYMENT_EXPIRY_MINUTES": "15",
    "NOTIFY_RETRY_TICK_SECONDS": "1",
    "NOTIFY_BACKOFF_SECONDS": "1",
    "OUTBOX_SWEEP_SECONDS": "0.5",
    "EVENT_RETRY_BACKOFF_SECONDS": "0.5",
    "SANDBOX_IPN_RETRY_SECONDS": "1",
    "SANDBOX_RECEIPT_DELAY_SECONDS": "0.2",
    "PORTAL_SYNC_TICK_SECONDS": "0.5",
    "PORTAL_SYNC_BACKOFF_SECONDS": "0.5",
}


def parse_procfile(path=None):
    """``[(name, command)]`` in file order; comments and blank lines ignored.

    ``E2E_PROCFILE`` names another Procfile (to try a changed line before committing it).
    """
    path = path or os.environ.get("E2E_PROCFILE") or ROOT / "Procfile"
    entries = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if match:
            entries.append((match.group(1), match.group(2)))
    return entries


class Vhost:
    """A RabbitMQ vhost made for one stack through the management API, deleted afterwards."""

    def __init__(self, amqp_uri, api_uri):
        self.name = f"e2e-{uuid.uuid4().hex[:10]}"
        api = urlparse(api_uri)
        self.api_base = f"{api.scheme}://{api.hostname}:{api.port or 15672}/api"
        self.auth = (api.username or "guest", api.password or "guest")
        amqp = urlparse(amqp_uri)
        self.amqp_uri = f"{amqp.scheme}://{amqp.netloc}/{quote(self.name, safe='')}"
        user = amqp.username or "guest"
        requests.put(f"{self.api_base}/vhosts/{quote(self.name, safe='')}", auth=self.auth, timeout=10).raise_for_status()
        requests.put(f"{self.api_base}/permissions/{quote(self.name, safe='')}/{user}", auth=self.auth, timeout=10,
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()

    def delete(self):
        requests.delete(f"{self.api_base}/vhosts/{quote(self.name, safe='')}", auth=self.auth, timeout=10)


class EventObserver:
    """A queue of our own bound to each service's event exchange: every event dispatched, counted."""

    def __init__(self, amqp_uri, services=SERVICES):
        self.connection = Connection(amqp_uri)
        self.queue = Queue(f"e2e-observer-{uuid.uuid4().hex[:6]}", durable=False, auto_delete=False,
                           bindings=[])
        channel = self.connection.channel()
        self.bound = Queue(self.queue.name, channel=channel, durable=False)
        self.bound.declare()
        for service in services:
            exchange = get_event_exchange(service, {})
            exchange(channel).declare()
            self.bound.bind_to(exchange=exchange.name, routing_key="#")
        self.events = []  # (event_type, payload)

    def drain(self):
        import json

        while True:
            message = self.bound.get(no_ack=True)
            if message is None:
                return self.events
            body = message.body
            payload = json.loads(body) if isinstance(body, (bytes, str)) else body
            self.events.append((message.delivery_info["routing_key"], payload))

    def of(self, event_type, **match):
        return [payload for kind, payload in self.drain()
                if kind == event_type and all(payload.get(k) == v for k, v in match.items())]

    def close(self):
        self.connection.release()


class Process:
    def __init__(self, name, index, command, env, log_path):
        self.name, self.index, self.command, self.env, self.log_path = name, index, command, env, log_path
        self.log_file = open(log_path, "wb")
        argv = shlex.split(command)
        self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log_file, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    @property
    def label(self):
        return f"{self.name}.{self.index}"

    def alive(self):
        return self.popen.poll() is None

    def tail(self, lines=40):
        self.log_file.flush()
        text = Path(self.log_path).read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def terminate(self):
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, timeout=5):
        if self.alive():
            self.terminate()
            try:
                self.popen.wait(max(timeout, 0.1))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)
        self.log_file.close()


class Stack:
    """Every Procfile line as processes: ``replicas`` of each service, one of every helper line."""

    def __init__(self, amqp_uri, databases, log_dir, replicas=1, only=None, extra_env=None, fast_timers=True):
        self.amqp_uri = amqp_uri
        self.fast_timers = fast_timers  # False: every timer at its production default (the bench)
        self.databases = databases
        self.log_dir = Path(log_dir)
        self.replicas = replicas
        self.only = only
        self.extra_env = extra_env or {}
        self.processes = []
        self.ports = {}  # label -> http port
        self.sandbox_port = free_port()
        self.smtp_port = free_port()

    @property
    def sandbox_url(self):
        return f"http://127.0.0.1:{self.sandbox_port}"

    def url(self, service, index=0):
        return f"http://127.0.0.1:{self.ports[f'{service}.{index}']}"

    def has(self, name):
        return any(process.name == name for process in self.processes)

    def base_env(self):
        env = {key: value for key, value in os.environ.items()
               if not key.endswith(("_DATABASE_URL", "_HTTP_ADDRESS"))}
        sandbox = self.sandbox_url
        for service in SERVICES:
            self.ports.setdefault(f"{service}.0", free_port())
        env.update({
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "AMQP_URI": self.amqp_uri,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            # a developer's stack: the sandbox may start (SANDBOX=1), http return URLs on 127.0.0.1 are allowed
            "PORTAL_DEV_MODE": "1",
            "SANDBOX": "1",
            "SANDBOX_HTTP_ADDRESS": f"127.0.0.1:{self.sandbox_port}",
            "SANDBOX_SMTP_ADDRESS": f"127.0.0.1:{self.smtp_port}",
            "PAYMENT_CALLBACK_BASE_URL": self.url("payment"),
            "NOTIFY_CALLBACK_BASE_URL": self.url("notify"),
            "ESMS_CALLBACK_TOKEN": E2E_ESMS_CALLBACK_TOKEN,
            "VNPAY_TMN_CODE": "E2ETMN01",
            "VNPAY_HASH_SECRET": "E2EVNPAYSECRET0123456789ABCDEFGH",
            "VNPAY_PAYMENT_URL": f"{sandbox}/paymentv2/vpcpay.html",
            "VNPAY_API_URL": f"{sandbox}/merchant_webapi/api/transaction",
            "MOMO_PARTNER_CODE": "MOMOE2E01",
            "MOMO_ACCESS_KEY": "e2eaccesskey",
            "MOMO_SECRET_KEY": "e2emomosecret0123456789abcdefghij",
            "MOMO_API_BASE": sandbox,
            "SMS_PROVIDERS": "esms,speedsms",
            "ESMS_BASE_URL": sandbox,
            "ESMS_API_KEY": "e2e-esms-key",
            "ESMS_SECRET_KEY": "e2e-esms-secret",
            "ESMS_BRANDNAME": "DVCE2E",
            "SPEEDSMS_BASE_URL": sandbox,
            "SPEEDSMS_ACCESS_TOKEN": "e2e-speedsms-token",
            "SPEEDSMS_SENDER": "DVCE2E",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp_port),
            "SMTP_SECURITY": "none",
            "SMTP_USERNAME": "",
            "SMTP_PASSWORD": "",
            "NATIONAL_PORTAL_URL": sandbox,
            "NATIONAL_PORTAL_USERNAME": "e2e-lgsp",
            "NATIONAL_PORTAL_PASSWORD": "e2e-lgsp-password",
            "NATIONAL_PORTAL_AGENCY_CODE": "000.00.00.H29",
            **(FAST_TIMERS if self.fast_timers else {}),
        })
        for service, database in self.databases.items():
            env[f"{service.upper()}_DATABASE_URL"] = database.url
        env.update(self.extra_env)
        return env

    def start(self, timeout=60):
        env = self.base_env()
        for name, command in parse_procfile():
            if self.only is not None and name not in self.only:
                continue
            copies = self.replicas if name in SERVICES else 1
            for index in range(copies):
                process_env = dict(env)
                if name in SERVICES:
                    port = self.ports.setdefault(f"{name}.{index}", free_port())
                    process_env[f"{name.upper()}_HTTP_ADDRESS"] = f"127.0.0.1:{port}"
                log_path = self.log_dir / f"{name}.{index}.log"
                self.processes.append(Process(name, index, command, process_env, log_path))
        self.wait_ready(timeout)
        return self

    def check_alive(self):
        dead = [process for process in self.processes if not process.alive()]
        if dead:
            details = "\n\n".join(f"--- {p.label} exited with {p.popen.returncode}; last lines:\n{p.tail()}"
                                  for p in dead)
            raise AssertionError(f"Procfile process(es) died: {', '.join(p.label for p in dead)}\n{details}")

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        pending = {process.label: process for process in self.processes}
        while pending:
            self.check_alive()
            for label, process in list(pending.items()):
                url = (f"{self.sandbox_url}/healthz" if process.name == "sandbox"
                       else f"http://127.0.0.1:{self.ports.get(label)}/readyz" if label in self.ports else None)
                if url is None:  # a helper line without an HTTP address: alive is all we can ask
                    del pending[label]
                    continue
                try:
                    if requests.get(url, timeout=2).status_code == 200:
                        del pending[label]
                except requests.RequestException:
                    pass
            if time.monotonic() > deadline:
                tails = "\n\n".join(f"--- {p.label}:\n{p.tail()}" for p in pending.values())
                raise AssertionError(f"not ready after {timeout}s: {', '.join(pending)}\n{tails}")
            time.sleep(0.2)

    def stop(self):
        for process in self.processes:  # all at once: each nameko process takes a moment to stop
            process.terminate()
        deadline = time.monotonic() + 5
        for process in self.processes:
            process.stop(timeout=deadline - time.monotonic())

    # --- the sandbox, as a test sees it ---

    def outbox(self, contains=None, channel=None):
        params = {k: v for k, v in {"contains": contains, "channel": channel}.items() if v}
        return requests.get(f"{self.sandbox_url}/outbox.json", params=params, timeout=5).json()["messages"]

    def gateway_state(self):
        return requests.get(f"{self.sandbox_url}/payments.json", timeout=5).json()

    def national_portal(self):
        """The fake national portal's view: ``{dossiers, progress, calls, rejected, format_errors, logins}``."""
        return requests.get(f"{self.sandbox_url}/national-portal.json", timeout=5).json()
