"""``config_timer``: the one timer of the services, its interval from the config."""
from portal_shared.extensions.timer import ConfigTimer, config_timer
from tests.helpers import wait_for


class Ticks:
    name = "ticks"
    count = 0

    @config_timer(interval=3600, config_key="TICK_SECONDS")
    def tick(self):
        Ticks.count += 1


def test_the_timer_takes_its_interval_from_the_config(container_factory, rabbit_config):
    Ticks.count = 0
    container = container_factory(Ticks, {**rabbit_config, "TICK_SECONDS": "0.05"})
    container.start()
    wait_for(lambda: Ticks.count >= 3, timeout=10, message="three ticks at 0.05 s")


def test_the_timer_keeps_its_interval_without_the_config_key(container_factory, rabbit_config):
    container = container_factory(Ticks, rabbit_config)
    container.start()
    timer = next(entrypoint for entrypoint in container.entrypoints if isinstance(entrypoint, ConfigTimer))
    assert timer.interval == 3600
