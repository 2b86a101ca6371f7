"""``GroupCommit``: what concurrent workers wait for at once runs as one batch; a failing batch splits."""
import eventlet
import pytest
from eventlet.event import Event

from portal_shared.extensions.grouping import GroupCommit


class Recorder:
    """``together`` / ``alone`` that record their calls; ``gate`` holds the first call until released."""

    def __init__(self, bad=()):
        self.calls = []
        self.bad = set(bad)
        self.gate = Event()
        self.entered = Event()

    def _hold(self):
        if not self.entered.ready():
            self.entered.send()
            self.gate.wait()

    def together(self, items, uow):
        self._hold()
        self.calls.append(("together", list(items), uow))
        if self.bad & set(items):
            raise ValueError("one of them is bad")
        return [item * 10 for item in items]

    def alone(self, item, uow):
        self._hold()
        self.calls.append(("alone", [item], uow))
        if item in self.bad:
            raise ValueError(f"{item} is bad")
        return item * 10


def run_all(group, items, first_entered=None):
    """Item 0 first (it leads); once its batch runs, the others arrive; returns each one's result or error."""
    outcomes = {}

    def one(item):
        try:
            outcomes[item] = group.run(item, f"uow-{item}")
        except Exception as exc:
            outcomes[item] = exc

    threads = [eventlet.spawn(one, items[0])]
    if first_entered is not None:
        first_entered.wait()
    threads += [eventlet.spawn(one, item) for item in items[1:]]
    eventlet.sleep(0)  # every later worker is waiting now
    return threads, outcomes


def test_a_lone_item_runs_at_once_and_alone():
    recorder = Recorder()
    recorder.gate.send()
    group = GroupCommit(recorder.together, recorder.alone)
    assert group.run(7, "uow-7") == 70
    assert recorder.calls == [("alone", [7], "uow-7")]


def test_items_that_arrive_during_a_batch_run_as_the_next_batch_with_its_first_workers_unit_of_work():
    recorder = Recorder()
    group = GroupCommit(recorder.together, recorder.alone)
    threads, outcomes = run_all(group, [1, 2, 3, 4, 5], recorder.entered)
    assert recorder.calls == []  # the first batch is held; the other four wait
    recorder.gate.send()
    for thread in threads:
        thread.wait()
    assert recorder.calls == [("alone", [1], "uow-1"), ("together", [2, 3, 4, 5], "uow-2")]
    assert outcomes == {1: 10, 2: 20, 3: 30, 4: 40, 5: 50}
    assert (group.batches, group.grouped) == (2, 4)


def test_a_failing_batch_runs_each_item_alone_and_only_the_bad_one_fails():
    recorder = Recorder(bad={3})
    group = GroupCommit(recorder.together, recorder.alone)
    threads, outcomes = run_all(group, [1, 2, 3, 4], recorder.entered)
    recorder.gate.send()
    for thread in threads:
        thread.wait()
    assert [kind for kind, _, _ in recorder.calls] == ["alone", "together", "alone", "alone", "alone"]
    assert outcomes[1] == 10 and outcomes[2] == 20 and outcomes[4] == 40
    assert isinstance(outcomes[3], ValueError) and str(outcomes[3]) == "3 is bad"


def test_a_batch_takes_at_most_most_items():
    recorder = Recorder()
    group = GroupCommit(recorder.together, recorder.alone, most=2)
    threads, outcomes = run_all(group, [1, 2, 3, 4, 5], recorder.entered)
    recorder.gate.send()
    for thread in threads:
        thread.wait()
    assert [items for _, items, _ in recorder.calls] == [[1], [2, 3], [4, 5]]
    assert outcomes == {1: 10, 2: 20, 3: 30, 4: 40, 5: 50}


def test_a_worker_killed_while_it_waits_leaves_no_one_without_a_leader():
    recorder = Recorder()
    group = GroupCommit(recorder.together, recorder.alone)
    threads, outcomes = run_all(group, [1, 2, 3], recorder.entered)
    threads[1].kill()  # item 2 was first in line to lead the next batch
    recorder.gate.send()
    for thread in (threads[0], threads[2]):
        thread.wait()
    assert outcomes == {1: 10, 3: 30}
    assert [items for _, items, _ in recorder.calls] == [[1], [3]]


def test_most_must_be_positive():
    with pytest.raises(ValueError):
        GroupCommit(lambda items, uow: items, lambda item, uow: item, most=0)
