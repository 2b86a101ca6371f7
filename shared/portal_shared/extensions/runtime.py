"""``StartupHeapFrozen``: the garbage collector set for a long-running service (``portal_shared.runtime``)."""
from nameko.extensions import DependencyProvider

from portal_shared.config import get_int
from portal_shared.logs import get_logger
from portal_shared.runtime import YOUNG_THRESHOLD, freeze_startup_heap

log = get_logger(__name__)


class StartupHeapFrozen(DependencyProvider):
    """Freezes what start-up made once every extension of the container is set up (``GC_YOUNG_THRESHOLD``
    sets the young generation's threshold, default 2000)."""

    def start(self):
        threshold = get_int(self.container.config, "GC_YOUNG_THRESHOLD", YOUNG_THRESHOLD)
        frozen = freeze_startup_heap(threshold)
        log.info("startup_heap_frozen", objects=frozen, young_threshold=threshold)
