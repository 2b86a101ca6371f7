"""The interpreter's garbage collector, set for a long-running service.

CPython's full collection walks every tracked object. A service holds about 150,000 of them after
start-up (modules, SQLAlchemy's metadata and compiled statements, Nameko, structlog), and
almost none of them ever becomes garbage, yet each full collection walked them all: 100–160 ms
with every green thread of the process stopped, several times a minute under load (measured with
``gc.callbacks`` during ``make bench``). That pause lands on whatever message is in flight.

``freeze_startup_heap`` collects once, then moves what survived start-up into the permanent
generation (``gc.freeze``), so later collections walk only what the service has made since; and it
raises the young generation's threshold, so the many short-lived objects of each message are
collected in fewer, larger passes. Cycles made later are still found and freed as before.
"""
import gc
import os
from pathlib import Path

YOUNG_THRESHOLD = 2_000  # allocations between young collections (CPython's default is 700)


def freeze_startup_heap(young_threshold=YOUNG_THRESHOLD):
    """Call once start-up is done (modules imported, extensions set up). Returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(max(1, int(young_threshold)), older, oldest)
    return gc.get_freeze_count()


# --- CPU weight ------------------------------------------------------------------------------------
#
# On a machine the whole stack shares, the kernel divides the CPU between *sessions* before it looks at
# a process's nice value: with autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``, on by
# default) every session is one group with an equal share, and a process started in a session of its
# own (``setsid``, as process managers and the test harness do) gets that equal share whatever its
# ``nice``. The autogroup's own nice value (``/proc/<pid>/autogroup``, sched(7)) is the weight that
# counts there. In a container the cgroup's weight counts instead (Compose ``cpu_shares``, Kubernetes
# CPU requests); autogroups do not apply, and writing one changes nothing.

AUTOGROUP = "/proc/self/autogroup"


def autogroup_nice(path=None):
    """The nice value of a process's autogroup (``/autogroup-<id> nice <n>``), or ``None`` when it has
    none to show: a kernel without autogroups, or a process in the default group (the session of the
    machine's init, where CI's containers may run their commands), whose file the kernel leaves empty."""
    try:
        fields = Path(path or AUTOGROUP).read_text(encoding="ascii").split()
    except OSError:
        return None
    if len(fields) != 3 or fields[1] != "nice" or not fields[2].lstrip("-").isdigit():
        return None
    return int(fields[2])


def set_cpu_nice(nice):
    """Give this process the CPU weight of ``nice`` (-20..19, lower runs first): its own nice value and,
    when it leads its session (so the session's autogroup is its alone), the autogroup's. Returns
    ``"autogroup"`` or ``"process"``: which weight took. A negative value needs ``CAP_SYS_NICE``
    (``PermissionError`` otherwise, with nothing changed)."""
    if not -20 <= nice <= 19:
        raise ValueError(f"a nice value is between -20 and 19, got {nice}")
    os.setpriority(os.PRIO_PROCESS, 0, nice)  # first: it refuses what the autogroup would refuse too
    if os.getsid(0) != os.getpid():
        return "process"  # a session shared with other processes: its weight is not ours to change
    try:
        with open(AUTOGROUP, "w", encoding="ascii") as autogroup:
            autogroup.write(str(nice))
    except OSError:  # a kernel without autogroups, or a /proc that cannot be written (some containers)
        return "process"
    return "autogroup" if autogroup_nice() == nice else "process"  # a write the kernel took but shows not
