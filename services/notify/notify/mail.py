"""E-mail through SMTP (smtplib): multipart text + HTML, UTF-8, with Message-ID and Date.

Connections are pooled: at most ``SMTP_POOL_SIZE`` per process, each kept
open between messages (idle ones for at most ``SMTP_POOL_IDLE_SECONDS``) and
logged in once. A pooled connection the server has closed in the meantime
fails on its first command; the message is then sent again once on a fresh
connection. ``SMTP_RATE_PER_SECOND`` (0 = none) spaces messages evenly.
"""
import base64
import smtplib
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, parseaddr

from notify.domain.model import Outcome, Status
from notify.sms import RateLimiter
from portal_shared.config import ConfigError, get_bool, get_float, get_int, get_str
from portal_shared.logs import get_logger
from portal_shared.timeutil import to_vn, utcnow

log = get_logger(__name__)

SECURITY_MODES = ("none", "starttls", "ssl")
DEFAULT_FROM = "Cổng Dịch vụ công <no-reply@dichvucong.localhost>"


def _part_lines(subtype, content):
    encoded = base64.encodebytes(content.encode("utf-8")).decode("ascii").splitlines()
    return [f'Content-Type: text/{subtype}; charset="utf-8"', "Content-Transfer-Encoding: base64", ""] + encoded + [""]


@dataclass(frozen=True)
class RawMail:
    sender: str
    recipient: str
    data: bytes
    message_id: str


def _send(client, email):
    """``email``: a ``RawMail`` from ``build_raw`` or an ``EmailMessage`` from ``build``."""
    if isinstance(email, RawMail):
        client.sendmail(email.sender, [email.recipient], email.data)
    else:
        client.send_message(email)


class SmtpMailer:
    """Sends messages over a pool of SMTP connections; errors become our delivery outcomes."""

    name = "smtp"

    def __init__(self, host, port, username=None, password=None, security="none", mail_from=DEFAULT_FROM, timeout=15.0,
                 pool_size=4, max_idle_seconds=30.0, rate_per_second=0.0, clock=time.monotonic):
        if security not in SECURITY_MODES:
            raise ValueError(f"SMTP_SECURITY must be one of {', '.join(SECURITY_MODES)}, got {security!r}")
        self.host, self.port, self.username, self.password = host, port, username, password
        self.security, self.mail_from, self.timeout = security, mail_from, timeout
        self.enabled = bool(host)
        self.max_idle_seconds, self.clock = max_idle_seconds, clock
        self._slots = threading.BoundedSemaphore(max(1, pool_size))
        self._idle = []  # (client, idle since); only touched while holding a slot
        self._idle_lock = threading.Lock()
        self.limiter = RateLimiter(rate_per_second)
        self.connections_opened = 0

    @classmethod
    def from_config(cls, config):
        host = get_str(config, "SMTP_HOST")
        security = (get_str(config, "SMTP_SECURITY", "none") or "none").lower()
        if security not in SECURITY_MODES:
            raise ConfigError(f"SMTP_SECURITY must be one of {', '.join(SECURITY_MODES)}, got {security!r}")
        if security == "none" and (get_str(config, "SMTP_USERNAME") or get_str(config, "SMTP_PASSWORD")) \
                and not get_bool(config, "SMTP_ALLOW_PLAINTEXT_AUTH"):
            raise ConfigError("SMTP credentials are set but SMTP_SECURITY is none: the password would travel in "
                              "clear; use starttls or ssl, or set SMTP_ALLOW_PLAINTEXT_AUTH=1 to accept that")
        default_port = {"none": 25, "starttls": 587, "ssl": 465}[security]
        mailer = cls(host, get_int(config, "SMTP_PORT", default_port), get_str(config, "SMTP_USERNAME"),
                     get_str(config, "SMTP_PASSWORD"), security, get_str(config, "MAIL_FROM", DEFAULT_FROM),
                     get_float(config, "SMTP_TIMEOUT_SECONDS", 15.0),
                     pool_size=get_int(config, "SMTP_POOL_SIZE", 4),
                     max_idle_seconds=get_float(config, "SMTP_POOL_IDLE_SECONDS", 30.0),
                     rate_per_second=get_float(config, "SMTP_RATE_PER_SECOND", 0.0))
        if not host:
            log.warning("email_disabled", reason="SMTP_HOST not set; e-mail notifications will wait and fail")
        return mailer

    def build(self, message):
        email = EmailMessage(policy=SMTP)
        email["From"] = self.mail_from
        email["To"] = message.recipient
        email["Subject"] = message.subject or ""
        email["Date"] = format_datetime(to_vn(utcnow()))
        domain = parseaddr(self.mail_from)[1].rpartition("@")[2] or "localhost"
        # derived from the notification id: a resend is recognisable as the same message
        email["Message-ID"] = f"<{message.id}@{domain}>"
        email.set_content(message.body, charset="utf-8")
        if message.html_body:
            email.add_alternative(message.html_body, subtype="html", charset="utf-8")
        return email

    def build_raw(self, message):
        """The same message as ``build`` as wire bytes, written directly: ``email``'s builder and
        generator cost several milliseconds of CPU per message, this a few dozen microseconds.
        Returns a ``RawMail``, or None when an address is not ASCII
        (then ``build`` is used)."""
        name, sender = parseaddr(self.mail_from)
        if not (sender.isascii() and message.recipient.isascii()):
            return None
        domain = sender.rpartition("@")[2] or "localhost"
        message_id = f"<{message.id}@{domain}>"
        boundary = f"=_{uuid.uuid4().hex}"
        headers = [
            f"From: {formataddr((name, sender), charset='utf-8')}",
            f"To: {message.recipient}",
            f"Subject: {Header(message.subject or '', 'utf-8').encode()}",
            f"Date: {format_datetime(to_vn(utcnow()))}",
            f"Message-ID: {message_id}",
            "MIME-Version: 1.0",
        ]
        parts = [("plain", message.body)] + ([("html", message.html_body)] if message.html_body else [])
        if len(parts) == 1:
            lines = headers + _part_lines(*parts[0])
        else:
            lines = headers + [f'Content-Type: multipart/alternative; boundary="{boundary}"', ""]
            for subtype, content in parts:
                lines += [f"--{boundary}"] + _part_lines(subtype, content)
            lines += [f"--{boundary}--", ""]
        return RawMail(sender, message.recipient, "\r\n".join(lines).encode("ascii"), message_id)

    def _connect(self):
        if self.security == "ssl":
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.security == "starttls":
                client.starttls(context=ssl.create_default_context())
        try:
            if self.username:
                client.login(self.username, self.password or "")
        except Exception:
            self._discard(client)
            raise
        self.connections_opened += 1
        return client

    def _checkout(self):
        """A pooled connection idle for less than ``max_idle_seconds`` (reused=True), else a new one."""
        now = self.clock()
        with self._idle_lock:
            while self._idle:
                client, since = self._idle.pop()
                if now - since < self.max_idle_seconds:
                    return client, True
                self._discard(client)
        return self._connect(), False

    def _checkin(self, client):
        with self._idle_lock:
            self._idle.append((client, self.clock()))

    @staticmethod
    def _discard(client):
        try:
            client.close()
        except Exception:
            pass

    def close(self):
        """Say goodbye on every idle connection (at shutdown)."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for client, _ in idle:
            try:
                client.quit()
            except Exception:
                self._discard(client)

    def _transmit(self, email):
        """Send on a pooled connection; a reused one the server closed meanwhile gets one fresh retry."""
        client, reused = self._checkout()
        try:
            _send(client, email)
        except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            self._discard(client)
            if not reused:
                raise
            log.info("smtp_reconnecting", error=type(exc).__name__)
            client = self._connect()
            try:
                _send(client, email)
            except BaseException:
                self._discard(client)
                raise
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException):
            # smtplib has reset the transaction: the connection is still good
            self._checkin(client)
            raise
        except BaseException:
            self._discard(client)
            raise
        self._checkin(client)

    def send(self, message):
        """Deliver one e-mail → ``Outcome``."""
        if not self.enabled:
            return Outcome(Status.TEMPORARY_FAILURE, None, None, "SMTP_HOST not configured")
        email = self.build_raw(message) or self.build(message)
        message_id = email.message_id if isinstance(email, RawMail) else email["Message-ID"]
        self.limiter.wait()
        try:
            with self._slots:
                self._transmit(email)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            status = Status.PERMANENT_FAILURE if codes and all(code >= 500 for code in codes) else Status.TEMPORARY_FAILURE
            log.info("smtp_failed", notification_id=message.id, codes=codes, status=status)
            return Outcome(status, self.name, None, f"recipient refused {codes}")
        except smtplib.SMTPResponseException as exc:
            log.info("smtp_failed", notification_id=message.id, code=exc.smtp_code)
            return Outcome(Status.TEMPORARY_FAILURE, self.name, None, f"smtp {exc.smtp_code}")
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            log.info("smtp_failed", notification_id=message.id, error=type(exc).__name__)
            return Outcome(Status.TEMPORARY_FAILURE, self.name, None, f"smtp {type(exc).__name__}: {exc}"[:500])
        log.debug("smtp_accepted", notification_id=message.id)  # notification_attempted says it at info
        return Outcome(Status.SENT, self.name, message_id)
