"""Channels and settings of the notify service from its config."""
from nameko.extensions import DependencyProvider

from notify.domain.model import RetryPolicy
from notify.mail import SmtpMailer
from notify.sms import SmsRouter
from notify.use_cases import Settings
from portal_shared.config import get_float, get_int, get_list
from portal_shared.logs import configure_logging


def build_channels(config):
    """One SMS router and one SMTP mailer (with its connection pool) per process."""
    configure_logging()  # the disabled-provider lines must come out formatted, whatever the setup order
    return {"sms": SmsRouter.from_config(config), "email": SmtpMailer.from_config(config)}


def default_lease_seconds(config):
    """Longest a send can take, plus a margin: every SMS provider's tries at its timeout, or an e-mail
    with one reconnect. Tens of seconds with the default timeouts (10 s per SMS try, 15 s SMTP)."""
    providers = max(1, len(get_list(config, "SMS_PROVIDERS", ["esms", "speedsms"])))
    sms = providers * get_int(config, "SMS_TRIES_PER_PROVIDER", 2) * get_float(config, "SMS_HTTP_TIMEOUT_SECONDS", 10.0)
    email = 2 * get_float(config, "SMTP_TIMEOUT_SECONDS", 15.0)
    return max(sms, email) + 10.0


def build_settings(config):
    return Settings(
        policy=RetryPolicy(
            max_attempts=get_int(config, "NOTIFY_MAX_ATTEMPTS", 5),
            base_seconds=get_float(config, "NOTIFY_BACKOFF_SECONDS", 30.0),
        ),
        lease_seconds=get_float(config, "NOTIFY_SENDING_LEASE_SECONDS", default_lease_seconds(config)),
        batch_size=get_int(config, "NOTIFY_BATCH_SIZE", 50),
    )


class DeliverySettings(DependencyProvider):
    def setup(self):
        self.settings = build_settings(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.settings
