"""The delivery pipeline under faults: a SIGKILL mid-send, a hung provider, SMTP connection reuse, rate limits.

Real RabbitMQ and PostgreSQL; the providers are the sandbox's fakes (real wire formats) in this process.
"""
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import eventlet
import requests
from aiosmtpd.controller import Controller
from kombu import Connection
from nameko.standalone.events import event_dispatcher

from notify.domain.model import Status
from sandbox.fakes import RecordingSmtpHandler
from notify.mail import SmtpMailer
from notify.service import NotifyService
from notify.use_cases import Message
from tests.helpers import free_port, rpc_proxy, wait_for
from tests.notify.test_service import dossier_event, parsed

ROOT = Path(__file__).resolve().parents[2]
EVENT_QUEUE = "evt-dossier-dossier_status_changed--notify.on_dossier_status_changed"
CONFIG = ROOT / "services" / "notify" / "config.yml"


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def sent_rows(config, references, channels=("sms", "email")):
    """Every notification of ``references`` once all are sent (or delivered), else None."""
    with rpc_proxy(config) as rpc:
        rows = [row for reference in references for row in rpc.notify.get_notifications(reference)]
    rows = [row for row in rows if row["channel"] in channels]
    expected = len(references) * len(channels)
    done = len(rows) == expected and all(row["status"] in ("sent", "delivered") for row in rows)
    return rows if done else None


# --- a notify process SIGKILLed with messages in flight -------------------------------------------------------

class NotifyProcess:
    """``nameko run`` of the notify service as its own OS process (so it can be SIGKILLed)."""

    def __init__(self, env, log_path):
        self.env, self.log_path = env, log_path
        self.port = int(env["NOTIFY_HTTP_ADDRESS"].rsplit(":", 1)[1])
        self.process = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("nameko")), "run", "--config", str(CONFIG), "notify.service"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        return self

    def wait_ready(self, timeout=60):
        def ready():
            assert self.process.poll() is None, Path(self.log_path).read_text()[-3000:]
            try:
                return requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, timeout=timeout, interval=0.1, message="notify ready")
        wait_for(self.consuming, timeout=timeout, interval=0.1, message="notify consuming dossier events")
        return time.time()

    def consuming(self):
        """The event queue has a consumer (/readyz can answer a moment before the consumers are up)."""
        with Connection(self.env["AMQP_URI"]) as connection:
            try:
                _, _, consumers = connection.default_channel.queue_declare(EVENT_QUEUE, passive=True)
            except Exception:
                return False
        return consumers > 0

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process is not None:
            self.log.close()


def process_env(notify_config):
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("ESMS_", "SPEEDSMS_", "SMTP_", "NOTIFY_", "SMS_"))}
    env = {**keep, **{key: str(value) for key, value in notify_config.items()
                      if key.isupper() and key not in ("DATABASE_URL", "WEB_SERVER_ADDRESS")}}
    env.update({
        "NOTIFY_DATABASE_URL": notify_config["DATABASE_URL"],
        "NOTIFY_HTTP_ADDRESS": notify_config["WEB_SERVER_ADDRESS"],
        "LOG_FORMAT": "json",
        "SMS_HTTP_TIMEOUT_SECONDS": "10",  # the slow provider below answers in time
        "NOTIFY_MAX_ATTEMPTS": "5",
        # room for every slow SMS at eSMS (a full provider would pass the rest to SpeedSMS, which has no
        # RequestId to make a resend harmless)
        "SMS_PROVIDER_CONCURRENCY": "32",
    })
    return env


def test_sigkilled_mid_send_every_message_reaches_its_provider_within_seconds_of_the_restart_and_once(
        notify_config, esms, speedsms, smtp, tmp_path):
    count = 20
    process = NotifyProcess(process_env(notify_config), tmp_path / "notify.log").start()
    try:
        process.wait_ready()
        esms.delay_seconds = 5.0  # every SMS is in flight for 5 s: the kill lands mid-send
        dispatch = event_dispatcher(notify_config)
        codes = [f"KILL-{i}" for i in range(count)]
        for i, code in enumerate(codes):
            dispatch("dossier", "dossier_status_changed",
                     dossier_event("accepted", dossier_code=code, phone=f"09123450{i:02d}"))
        # the e-mails are out and recorded (an e-mail between the server's 250 and our record would be sent
        # again: SMTP has no idempotency key; README "Notify delivery" states that window)
        wait_for(lambda: sent_rows(notify_config, codes, channels=("email",)), timeout=30, interval=0.1,
                 message="e-mails sent")
        wait_for(lambda: len(esms.requests) >= 5, timeout=30, message="SMS in flight at eSMS")
        killed_at = time.time()  # before the signal: the broker hands the messages over while kill() still waits
        process.kill()
        in_flight_at_kill = len(esms.requests) - len(esms.delivered)
        assert in_flight_at_kill > 0
        esms.delay_seconds = 0.0

        process.start()
        ready_at = process.wait_ready()
        rows = wait_for(lambda: sent_rows(notify_config, codes), timeout=30, interval=0.2,
                        message="every notification sent after the restart")
    finally:
        process.stop()

    # each SMS reached eSMS once, and those not accepted before the restart were sent within 10 s of it
    phones = [sms["phone"] for sms in esms.delivered]
    assert sorted(phones) == sorted(f"849123450{i:02d}" for i in range(count)), phones
    assert speedsms.delivered == []
    sms_rows = [row for row in rows if row["channel"] == "sms"]
    accepted_at = {sms["request_id"]: sms["at"] for sms in esms.delivered}
    after_restart = [request["at"] for request in esms.requests if request["at"] >= killed_at]
    assert after_restart, "nothing was sent again after the restart"
    late = [row["id"] for row in sms_rows if accepted_at[row["id"]] > ready_at + 10]
    assert late == [], f"reached eSMS more than 10 s after the restart: {late}"
    assert max(after_restart) <= ready_at + 10, (max(after_restart) - ready_at)
    # the messages held by the killed process were taken over at once, not after the lease (50 s here)
    assert any(row["attempts"] == 2 for row in sms_rows)
    message_ids = [parsed(envelope)["Message-ID"] for envelope in smtp.messages]
    assert len(message_ids) == len(set(message_ids)) == count


def test_sigkilled_mid_send_a_second_replica_takes_the_messages_over_at_once(
        notify_config, esms, speedsms, smtp, tmp_path):
    count = 20
    env_a = process_env(notify_config)
    env_b = {**env_a, "NOTIFY_HTTP_ADDRESS": f"127.0.0.1:{free_port()}"}
    replicas = [NotifyProcess(env, tmp_path / f"notify-{i}.log").start() for i, env in enumerate((env_a, env_b))]
    try:
        for replica in replicas:
            replica.wait_ready()
        esms.delay_seconds = 5.0
        dispatch = event_dispatcher(notify_config)
        codes = [f"TAKE-{i}" for i in range(count)]
        for i, code in enumerate(codes):
            dispatch("dossier", "dossier_status_changed",
                     dossier_event("accepted", dossier_code=code, phone=f"09123460{i:02d}", email_address=None))
        wait_for(lambda: len(esms.requests) >= count, timeout=30, message="every SMS in flight at eSMS")
        killed_at = time.time()  # before the signal: the other replica may resend while kill() still waits
        replicas[0].kill()
        esms.delay_seconds = 0.0
        rows = wait_for(lambda: sent_rows(notify_config, codes, channels=("sms",)), timeout=30, interval=0.2,
                        message="every SMS sent by the surviving replica")
    finally:
        for replica in replicas:
            replica.stop()
    phones = [sms["phone"] for sms in esms.delivered]
    assert sorted(phones) == sorted(f"849123460{i:02d}" for i in range(count)) and speedsms.delivered == []
    taken_over = [row for row in rows if row["attempts"] == 2]
    assert taken_over, "the killed replica held none of the messages"
    resent = [request["at"] for request in esms.requests if request["at"] >= killed_at]
    assert len(resent) >= len(taken_over) and max(resent) - killed_at <= 10, (max(resent) - killed_at)


# --- a provider hanging for 30 s ---------------------------------------------------------------------------------

def test_a_hung_sms_provider_delays_neither_email_nor_the_other_provider_nor_rpc_and_healthz(
        container_factory, notify_config, esms, speedsms, smtp):
    config = {**notify_config, "SMS_HTTP_TIMEOUT_SECONDS": 1.0, "SMS_PROVIDER_COOLDOWN_SECONDS": 5}
    container_factory(NotifyService, config).start()
    esms.timeout_seconds = 30.0
    esms.always("timeout")  # eSMS takes every request and answers nothing for 30 s

    dispatch = event_dispatcher(config)
    codes, dispatched_at, probes = [], {}, []
    for i in range(60):  # 10 dossiers a second for 6 s
        code = f"HANG-{i}"
        codes.append(code)
        dispatched_at[code] = time.time()
        dispatch("dossier", "dossier_status_changed",
                 dossier_event("accepted", dossier_code=code, phone=f"09876500{i:02d}",
                               email_address=f"hang{i}@example.vn"))
        if i % 10 == 5:
            started = time.time()
            assert requests.get(f"http://{config['WEB_SERVER_ADDRESS']}/healthz", timeout=5).status_code == 200
            with rpc_proxy(config) as rpc:
                rpc.notify.get_notifications(codes[0])
            probes.append(time.time() - started)
        eventlet.sleep(0.1)
    wait_for(lambda: sent_rows(config, codes), timeout=30, interval=0.2, message="every notification sent")
    esms.always(None)

    sms_latency = []
    for sms in speedsms.delivered:
        code = next(c for c in codes if f"Ho so {c} " in sms["content"])
        sms_latency.append(sms["at"] - dispatched_at[code])
    mail_latency = []
    for envelope, at in zip(smtp.messages, smtp.received_at):
        code = next(c for c in codes if f"{c} " in str(parsed(envelope)["Subject"]) + " ")
        mail_latency.append(at - dispatched_at[code])
    assert len(sms_latency) == len(mail_latency) == 60 and esms.delivered == []
    assert percentile(sms_latency, 0.99) <= 2.0, sorted(sms_latency)[-5:]
    assert percentile(mail_latency, 0.99) <= 2.0, sorted(mail_latency)[-5:]
    assert max(probes) < 2.0, probes  # /healthz and an RPC answered while eSMS hung


# --- SMTP connections reused --------------------------------------------------------------------------------------

def test_emails_reuse_pooled_smtp_connections(container_factory, notify_config, smtp):
    config = {**notify_config, "SMTP_POOL_SIZE": 2}
    container_factory(NotifyService, config).start()
    dispatch = event_dispatcher(config)
    codes = [f"POOL-{i}" for i in range(30)]
    for code in codes:
        dispatch("dossier", "dossier_status_changed", dossier_event("processed", dossier_code=code, phone=None))
    wait_for(lambda: sent_rows(config, codes, channels=("email",)), timeout=30, interval=0.2,
             message="30 e-mails sent")
    assert len(smtp.messages) == 30
    assert 1 <= len(smtp.peers) <= 2, smtp.peers  # 30 e-mails over at most two connections


def test_a_pooled_connection_closed_by_the_server_is_replaced():
    handler, port = RecordingSmtpHandler(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    mailer = SmtpMailer("127.0.0.1", port, pool_size=1, mail_from="DVC <no-reply@dichvucong.test>")

    def mail(i):
        return Message(str(uuid.uuid4()), "email", f"pool{i}@example.vn", "Hồ sơ", "Nội dung", None)

    try:
        assert [mailer.send(mail(i)).status for i in range(5)] == [Status.SENT] * 5
        assert mailer.connections_opened == 1 and len(handler.peers) == 1
        controller.stop()  # the server goes away with every connection; the pooled one is dead
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        assert mailer.send(mail(5)).status == Status.SENT
        assert mailer.connections_opened == 2 and len(handler.messages) == 6
    finally:
        mailer.close()
        controller.stop()


# --- per-provider rate limit ------------------------------------------------------------------------------------------

def test_the_esms_rate_limit_holds_under_a_burst_and_messages_wait_instead_of_failing(
        container_factory, notify_config, esms, speedsms):
    rate = 10
    config = {**notify_config, "ESMS_RATE_PER_SECOND": rate}
    container_factory(NotifyService, config).start()
    dispatch = event_dispatcher(config)
    codes = [f"RATE-{i}" for i in range(40)]
    for i, code in enumerate(codes):  # a burst: 40 SMS at once
        dispatch("dossier", "dossier_status_changed",
                 dossier_event("accepted", dossier_code=code, phone=f"09111100{i:02d}", email_address=None))
    rows = wait_for(lambda: sent_rows(config, codes, channels=("sms",)), timeout=30, interval=0.2,
                    message="40 SMS sent")
    assert len(esms.delivered) == 40 and speedsms.requests == []  # waited for eSMS, no failover
    assert all(row["attempts"] == 1 and row["provider"] == "esms" for row in rows)  # none failed for the limit
    times = sorted(request["at"] for request in esms.requests)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= rate + 1, busiest
    assert times[-1] - times[0] >= (len(times) - 1) / rate * 0.9
