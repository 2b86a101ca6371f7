"""Nameko dependency provider handing workers the gateways and payment settings."""
from nameko.extensions import DependencyProvider

from payment.gateways import PaymentSettings
from portal_shared.logs import get_logger

log = get_logger(__name__)


class Gateways(DependencyProvider):
    """Builds the adapters once at start-up; a gateway without credentials is logged, not fatal."""

    def setup(self):
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
