"""E-mail through SMTP (smtplib): multipart text + HTML, UTF-8, with Message-ID and Date."""
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr

from notify.domain.model import Outcome, Status
from portal_shared.config import ConfigError, get_bool, get_float, get_int, get_str
from portal_shared.logs import get_logger
from portal_shared.timeutil import to_vn, utcnow

log = get_logger(__name__)

SECURITY_MODES = ("none", "starttls", "ssl")
DEFAULT_FROM = "Cổng Dịch vụ công <no-reply@dichvucong.localhost>"


class SmtpMailer:
    """Sends one message per connection; errors become our delivery outcomes."""

    name = "smtp"

    def __init__(self, host, port, username=None, password=None, security="none", mail_from=DEFAULT_FROM, timeout=15.0):
        if security not in SECURITY_MODES:
            raise ValueError(f"SMTP_SECURITY must be one of {', '.join(SECURITY_MODES)}, got {security!r}")
        self.host, self.port, self.username, self.password = host, port, username, password
        self.security, self.mail_from, self.timeout = security, mail_from, timeout
        self.enabled = bool(host)

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
                     get_float(config, "SMTP_TIMEOUT_SECONDS", 15.0))
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

    def _connect(self):
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
        client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            client.starttls(context=ssl.create_default_context())
        return client

    def send(self, message):
        """Deliver one e-mail → ``Outcome``."""
        if not self.enabled:
            return Outcome(Status.TEMPORARY_FAILURE, None, None, "SMTP_HOST not configured")
        email = self.build(message)
        try:
            with self._connect() as client:
                if self.username:
                    client.login(self.username, self.password or "")
                client.send_message(email)
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
        log.info("smtp_accepted", notification_id=message.id)
        return Outcome(Status.SENT, self.name, email["Message-ID"])
