"""The process a service runs in: ``StartupHeapFrozen`` sets its garbage collector, ``CpuWeight`` its
share of the CPU (``portal_shared.runtime``)."""
from nameko.extensions import DependencyProvider

from portal_shared.config import ConfigError, get_int
from portal_shared.logs import configure_logging, get_logger
from portal_shared.runtime import YOUNG_THRESHOLD, freeze_startup_heap, set_cpu_nice

log = get_logger(__name__)


class StartupHeapFrozen(DependencyProvider):
    """Freezes what start-up made once every extension of the container is set up (``GC_YOUNG_THRESHOLD``
    sets the young generation's threshold, default 2000)."""

    def start(self):
        threshold = get_int(self.container.config, "GC_YOUNG_THRESHOLD", YOUNG_THRESHOLD)
        frozen = freeze_startup_heap(threshold)
        log.info("startup_heap_frozen", objects=frozen, young_threshold=threshold)


class CpuWeight(DependencyProvider):
    """Sets the process's CPU weight from ``CPU_NICE`` (-20..19; 0, the default, leaves it alone) when the
    container is set up. A negative value needs ``CAP_SYS_NICE``: without it the service logs
    ``cpu_weight_refused`` and runs at the weight it has, as it would with ``CPU_NICE`` unset."""

    def setup(self):
        configure_logging()  # its line must come out formatted, whatever the extensions' set-up order
        nice = get_int(self.container.config, "CPU_NICE", 0)
        if nice == 0:
            return
        try:
            weight = set_cpu_nice(nice)
        except ValueError as exc:
            raise ConfigError(f"CPU_NICE: {exc}") from None
        except PermissionError:
            log.warning("cpu_weight_refused", nice=nice, reason="a negative nice needs CAP_SYS_NICE")
            return
        log.info("cpu_weight_set", nice=nice, applies_to=weight)
