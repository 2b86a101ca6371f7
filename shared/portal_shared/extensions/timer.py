"""``@config_timer``: Nameko's ``@timer`` whose interval a config key can set."""
from nameko.timer import Timer

from portal_shared.config import get_float


class ConfigTimer(Timer):
    """A timer whose interval is read from ``config_key`` at set-up (decimals allowed), else ``interval``."""

    def __init__(self, interval, config_key=None, **kwargs):
        self.config_key = config_key
        super().__init__(interval, **kwargs)

    def setup(self):
        if self.config_key:
            self.interval = get_float(self.container.config, self.config_key, self.interval)


config_timer = ConfigTimer.decorator
