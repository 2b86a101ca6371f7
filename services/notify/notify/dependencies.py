"""Nameko dependency providers of the notify service: channels, settings and a configurable timer."""
from nameko.extensions import DependencyProvider
from nameko.timer import Timer

from notify.domain.model import RetryPolicy
from notify.mail import SmtpMailer
from notify.sms import SmsRouter
from notify.use_cases import Settings
from portal_shared.config import get_float, get_int
from portal_shared.logs import configure_logging


class Channels(DependencyProvider):
    """One SMS router and one SMTP mailer per container (the router's cool-down state is per process)."""

    def setup(self):
        configure_logging()  # the disabled-provider lines must come out formatted, whatever the setup order
        config = self.container.config
        self.channels = {"sms": SmsRouter.from_config(config), "email": SmtpMailer.from_config(config)}

    def get_dependency(self, worker_ctx):
        return self.channels


class DeliverySettings(DependencyProvider):
    def setup(self):
        config = self.container.config
        self.settings = Settings(
            policy=RetryPolicy(
                max_attempts=get_int(config, "NOTIFY_MAX_ATTEMPTS", 5),
                base_seconds=get_float(config, "NOTIFY_BACKOFF_SECONDS", 30.0),
            ),
            lease_seconds=get_float(config, "NOTIFY_SENDING_LEASE_SECONDS", 120.0),
            batch_size=get_int(config, "NOTIFY_BATCH_SIZE", 20),
        )

    def get_dependency(self, worker_ctx):
        return self.settings


class ConfigTimer(Timer):
    """A ``@timer`` whose interval comes from a config key (default: the decorator's interval)."""

    def __init__(self, interval, config_key=None, **kwargs):
        self.config_key = config_key
        super().__init__(interval, **kwargs)

    def setup(self):
        if self.config_key:
            self.interval = get_float(self.container.config, self.config_key, self.interval)


config_timer = ConfigTimer.decorator
