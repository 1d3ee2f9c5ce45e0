"""Signals to `taskqueue_worker`: one is a graceful shutdown, a second an immediate one, with or
without `--processes N`; and a process whose worker thread died exits non-zero for its supervisor to
restart it."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskqueue.engine.liveness import pid_alive
from taskqueue.models import Status, Task, WorkerProcess
from taskqueue.worker import process, supervisor
from tests.conftest import recorded, wait_until
from tests.taskqueue import sample_signals as s

# Two children of one thread, claiming one task at a time: each child runs one long task.
SUPERVISED = ("--queues", "signals", "--processes", "2", "--threads", "1", "--batch-size", "1")
GRACEFUL = "received: finishing running tasks"  # what a child logs on its first signal
IMMEDIATE = "second signal: exiting at once"  # and on its second


def children_of(pid: int) -> set[int]:
    """The processes whose parent is `pid`, from /proc."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def started(record_file: Path) -> dict[str, int]:
    """Task id -> pid of the process that started it."""
    return {
        line.split()[0]: int(line.split()[2])
        for line in recorded(record_file)
        if " started " in line
    }


def start_two_children_running_a_task_each(workers, record_file: Path, task) -> tuple:
    """Two quick tasks that complete, then three long ones: two running (one per child), one
    waiting."""
    quick = [s.quick_task.enqueue() for _ in range(2)]
    long = [task.enqueue(60.0) for _ in range(3)]
    supervisor = workers.start(*SUPERVISED)
    wait_until(
        lambda: len(set(started(record_file).values())) == 2,
        timeout=30,
        message="each child started a long task",
    )
    return supervisor, quick, long


def send(supervisor, signum: int, to: str) -> None:
    if to == "group":  # as supervisord's stopasgroup or a terminal's Ctrl-C do
        os.killpg(supervisor.pid, signum)
    else:
        supervisor.send_signal(signum)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "to"),
    [(signal.SIGTERM, "parent"), (signal.SIGTERM, "group"), (signal.SIGINT, "group")],
    ids=["sigterm-to-parent", "sigterm-to-group", "sigint-to-group"],
)
def test_one_signal_to_a_supervisor_is_one_graceful_shutdown_of_every_child(
    workers, record_file, signum, to
) -> None:
    supervisor, quick, long = start_two_children_running_a_task_each(
        workers, record_file, s.long_task
    )
    children = children_of(supervisor.pid)
    assert len(children) == 2

    send(supervisor, signum, to)
    assert supervisor.wait(timeout=20) == 0, "every child exited 0"

    logs = workers.logs()
    assert logs.count(GRACEFUL) == 2 and IMMEDIATE not in logs, "each child got the signal once"
    assert set(started(record_file).values()) == children, "no child was started after the signal"
    for result in quick:
        assert Task.objects.get(pk=result.id).status == Status.SUCCEEDED
    running = set(started(record_file))
    for result in long:
        task = Task.objects.get(pk=result.id)
        assert (task.status, task.attempts, task.claimed_by_id) == (Status.READY, 0, None), (
            "back, uncounted"
        )
        assert task.max_attempts == 1
        if result.id in running:
            assert f"{result.id} stopped {started(record_file)[result.id]}" in recorded(record_file)
    assert not WorkerProcess.objects.exists(), "every child deregistered"


@pytest.mark.slow
def test_a_second_signal_to_a_supervisor_is_passed_on_and_its_children_exit_at_once(
    workers, record_file
) -> None:
    supervisor, _, _ = start_two_children_running_a_task_each(workers, record_file, s.stubborn_task)
    children = children_of(supervisor.pid)

    supervisor.send_signal(signal.SIGTERM)
    time.sleep(3)  # the stubborn tasks run on: the children wait for them
    assert supervisor.poll() is None and all(pid_alive(pid) for pid in children), (
        "one signal is the graceful one"
    )
    assert Task.objects.filter(status=Status.RUNNING).count() == 2

    asked = time.monotonic()
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=10) != 0, "children that exited at once exited 1"
    assert time.monotonic() - asked < 5
    assert not any(pid_alive(pid) for pid in children)
    logs = workers.logs()
    assert logs.count(GRACEFUL) == 2 and logs.count(IMMEDIATE) == 2, (
        "each child got each signal once"
    )


@pytest.mark.slow
def test_a_child_started_just_before_the_signal_gets_it_once_and_shuts_down_gracefully(
    workers,
) -> None:
    supervisor = workers.start(*SUPERVISED)
    wait_until(
        lambda: WorkerProcess.objects.count() == 2, timeout=30, message="both children registered"
    )
    first = children_of(supervisor.pid)
    os.kill(min(first), signal.SIGKILL)
    wait_until(
        lambda: children_of(supervisor.pid) - first,
        timeout=10,
        message="the supervisor started a new child",
    )

    supervisor.send_signal(
        signal.SIGTERM
    )  # the new child is still starting: no signal handler of its own yet
    assert supervisor.wait(timeout=30) == 0, "the new child too shut down gracefully"
    logs = workers.logs()
    assert logs.count(GRACEFUL) == 2 and IMMEDIATE not in logs, (
        "the survivor and the new child, once each"
    )


@pytest.mark.slow
def test_a_supervisor_killed_outright_takes_its_children_with_it(workers) -> None:
    supervisor = workers.start(*SUPERVISED)
    wait_until(
        lambda: WorkerProcess.objects.count() == 2, timeout=30, message="both children registered"
    )
    children = children_of(supervisor.pid)

    supervisor.send_signal(
        signal.SIGKILL
    )  # only the parent: its children have process groups of their own
    supervisor.wait(timeout=5)
    wait_until(
        lambda: not any(pid_alive(pid) for pid in children),
        timeout=5,
        message="the children exited",
    )
    assert "supervisor (pid" in workers.logs()


class StandInGroup:
    """What run_until_signalled needs of a WorkerGroup; `failure` is set only when given."""

    def __init__(self, **attributes: object) -> None:
        self.__dict__.update(attributes)
        self.started = False

    def start(self) -> None:
        self.started = True

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        pass

    def request_stop(self) -> None:
        pass


@pytest.fixture
def signal_handlers_restored() -> Iterator[None]:
    """run_until_signalled installs its handlers in this process: put pytest's back afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in process.STOP_SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_a_process_whose_worker_thread_died_exits_1_with_the_reason(
    signal_handlers_restored, caplog
) -> None:
    group = StandInGroup(failure="worker thread default-1 died: RuntimeError('boom')")
    with (
        caplog.at_level(logging.CRITICAL, logger="taskqueue.worker"),
        pytest.raises(SystemExit) as exit_,
    ):
        process.run_until_signalled(group)
    assert group.started and exit_.value.code == 1
    assert "worker thread default-1 died: RuntimeError('boom')" in caplog.text


@pytest.mark.parametrize(
    "group", [StandInGroup(failure=None), StandInGroup()], ids=["healthy", "no-attribute"]
)
def test_a_process_whose_group_ended_without_a_failure_returns_normally(
    signal_handlers_restored, group
) -> None:
    assert process.run_until_signalled(group) is None
    assert group.started


def test_a_supervisor_exits_0_only_when_every_child_did() -> None:
    assert supervisor.exit_status([0, 0]) == 0
    assert supervisor.exit_status([0, 1]) == 1
    assert supervisor.exit_status([0, -signal.SIGKILL]) == 1, (
        "killed by a signal is not a clean exit"
    )


@pytest.mark.slow
def test_a_worker_whose_thread_died_exits_1_and_its_supervisor_restarts_it(
    workers, record_file
) -> None:
    s.break_the_next_claim.enqueue()
    supervisor = workers.start(*SUPERVISED)
    wait_until(
        lambda: recorded(record_file), timeout=30, message="the task broke its process's claims"
    )
    broken = int(recorded(record_file)[0].split()[1])

    restarted = f"worker process {broken} exited with 1; restarting it"
    wait_until(
        lambda: restarted in workers.logs(), timeout=30, message="the supervisor saw it exit 1"
    )
    assert "worker process exits with status 1: worker thread" in workers.logs(), "with the reason"
    wait_until(
        lambda: len(children_of(supervisor.pid)) == 2, timeout=10, message="two children again"
    )
