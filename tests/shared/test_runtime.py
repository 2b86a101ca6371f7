"""``freeze_startup_heap``: what exists at start-up leaves the collector's walks; later garbage is still freed.
``set_cpu_nice`` / ``CpuWeight``: a service's share of a CPU the stack shares."""
import gc
import io
import json
import subprocess
import sys
import weakref
from types import SimpleNamespace

import pytest

from portal_shared.config import ConfigError
from portal_shared.extensions import runtime as runtime_extensions
from portal_shared.extensions.runtime import CpuWeight
from portal_shared.logs import configure_logging
from portal_shared.runtime import autogroup_nice, freeze_startup_heap, set_cpu_nice


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


# --- CPU weight --------------------------------------------------------------------------------------

SHOW_WEIGHT = """
import os
from portal_shared.runtime import autogroup_nice, set_cpu_nice
taken = set_cpu_nice({nice})
print(taken, os.getpriority(os.PRIO_PROCESS, 0), autogroup_nice())
"""


def _weight_in_child(nice, own_session):
    """``set_cpu_nice(nice)`` in a child process (the test's own weight stays as it is): what it returned,
    the child's nice value and its autogroup's."""
    done = subprocess.run([sys.executable, "-c", SHOW_WEIGHT.format(nice=nice)], capture_output=True, text=True,
                          timeout=60, start_new_session=own_session, check=True)
    taken, process_nice, group_nice = done.stdout.split()
    return taken, int(process_nice), None if group_nice == "None" else int(group_nice)


def test_a_session_leader_sets_its_own_nice_and_its_autogroup():
    taken, process_nice, group_nice = _weight_in_child(7, own_session=True)
    assert process_nice == 7
    if group_nice is None:  # a kernel without autogroups (or none shown): only the process's own weight exists
        assert taken == "process"
    else:
        assert (taken, group_nice) == ("autogroup", 7)


WRITE_UNSHOWN = """
from portal_shared import runtime
runtime.AUTOGROUP = {path!r}  # a file that takes the write, as a /proc without autogroups may, and shows no group
print(runtime.set_cpu_nice(7))
"""


def test_an_autogroup_write_the_kernel_does_not_show_counts_as_the_process_weight_only(tmp_path):
    path = tmp_path / "autogroup"
    path.write_text("")
    done = subprocess.run([sys.executable, "-c", WRITE_UNSHOWN.format(path=str(path))], capture_output=True,
                          text=True, timeout=60, start_new_session=True, check=True)
    assert path.read_text() == "7"  # written, as a session leader does
    assert done.stdout.split() == ["process"]


def test_a_process_sharing_its_session_leaves_the_autogroup_alone():
    ours = autogroup_nice()  # None in the default group: init's session, where CI runs the suite
    taken, process_nice, group_nice = _weight_in_child(7, own_session=False)
    assert (taken, process_nice) == ("process", 7)
    assert group_nice == ours  # the test run's session keeps its weight


@pytest.mark.parametrize("shown, nice", [
    ("/autogroup-85 nice -5\n", -5),
    ("/autogroup-3 nice 0\n", 0),
    ("", None),  # the default group: the kernel shows nothing
    ("garbled\n", None),
    ("/autogroup-3 nice x\n", None),
])
def test_the_autogroup_nice_is_read_from_what_the_kernel_shows(tmp_path, shown, nice):
    path = tmp_path / "autogroup"
    path.write_text(shown)
    assert autogroup_nice(path) == nice


def test_no_autogroup_file_means_no_autogroup_nice(tmp_path):
    assert autogroup_nice(tmp_path / "absent") is None


def test_a_nice_value_out_of_range_is_refused():
    with pytest.raises(ValueError, match="between -20 and 19"):
        set_cpu_nice(20)


def _provider(value):
    provider = CpuWeight()
    provider.container = SimpleNamespace(config={"CPU_NICE": value})
    return provider


def test_cpu_nice_unset_or_zero_changes_nothing(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime_extensions, "set_cpu_nice", calls.append)
    _provider(None).setup()
    _provider("0").setup()
    assert calls == []


def test_a_weight_the_process_may_not_take_is_logged_and_start_up_goes_on(monkeypatch):
    def refuse(nice):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(runtime_extensions, "set_cpu_nice", refuse)
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream, force=True)
    try:
        _provider("-5").setup()
    finally:
        configure_logging(force=True)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert (line["event"], line["level"], line["nice"]) == ("cpu_weight_refused", "warning", -5)


@pytest.mark.parametrize("value", ["25", "-21", "fast"])
def test_a_malformed_cpu_nice_stops_start_up_naming_the_key(value):
    with pytest.raises(ConfigError, match="CPU_NICE"):
        _provider(value).setup()
