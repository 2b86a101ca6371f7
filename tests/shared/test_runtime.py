"""``freeze_startup_heap``: what exists at start-up leaves the collector's walks; later garbage is still freed."""
import gc
import weakref

import pytest

from portal_shared.runtime import freeze_startup_heap


@pytest.fixture
def restore_collector():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    pass


def test_the_start_up_heap_is_frozen_and_young_collections_are_rarer(restore_collector):
    survivor = Node()
    frozen = freeze_startup_heap(young_threshold=1234)
    assert frozen == gc.get_freeze_count() > 1000  # the modules, classes and objects made so far
    assert gc.get_threshold()[0] == 1234
    assert gc.is_tracked(survivor)


def test_a_cycle_made_after_the_freeze_is_still_collected(restore_collector):
    freeze_startup_heap()
    first, second = Node(), Node()
    first.other, second.other = second, first  # a cycle: only the collector frees it
    gone = weakref.ref(first)
    del first, second
    gc.collect()
    assert gone() is None
