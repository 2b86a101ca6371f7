"""Nameko dependency provider handing workers the gateways and payment settings."""
from nameko.extensions import DependencyProvider

from payment.gateways import PaymentSettings
from portal_shared.config import ConfigError, dev_mode, get_str
from portal_shared.event_signing import load_key
from portal_shared.logs import get_logger

log = get_logger(__name__)

# The sandbox's dummy credentials (services/sandbox/sandbox/config.py DUMMY), published in this
# repository: anyone can sign a "paid" IPN with them, so they are refused outside dev mode.
PUBLISHED_SANDBOX_SECRETS = {
    "VNPAY_HASH_SECRET": "SANDBOXVNPAYHASHSECRET0123456789",
    "MOMO_ACCESS_KEY": "sandboxaccesskey",
    "MOMO_SECRET_KEY": "sandboxmomosecretkey0123456789ab",
}


def check_not_published(config):
    """``ConfigError`` when a gateway secret is the sandbox's published one and dev mode is off."""
    if dev_mode(config):
        return
    for key, published in PUBLISHED_SANDBOX_SECRETS.items():
        if get_str(config, key) == published:
            raise ConfigError(f"{key} is the sandbox's published dummy secret; refused outside dev mode "
                              "(PORTAL_DEV_MODE=1, as `make run` sets)")


class Gateways(DependencyProvider):
    """Builds the adapters once at start-up; a gateway without credentials is logged, not fatal."""

    def setup(self):
        check_not_published(self.container.config)
        from payment.messagebus import EVENT_KEY  # late: the bus imports the use cases, which import gateways

        if load_key(EVENT_KEY) is None:  # a key too short stops start-up here
            log.info("payment_events_unsigned", reason=f"{EVENT_KEY} is not set: dossier confirms each "
                     "payment_succeeded with get_payment")
        self.settings = PaymentSettings(self.container.config)
        for name, gateway in self.settings.gateways.items():
            if gateway.configured:
                log.info("payment_gateway_enabled", gateway=name)
            else:
                log.warning(
                    "payment_gateway_disabled",
                    gateway=name,
                    reason="credentials not configured; start_payment answers GatewayUnavailable for it",
                )

    def get_dependency(self, worker_ctx):
        return self.settings
