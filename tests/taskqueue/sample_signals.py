"""Long django.tasks tasks for the signal tests; importable by the worker processes the tests
start."""

from __future__ import annotations

import os
import time

from django.tasks import TaskContext, task

from taskqueue import Stopped, stop_requested
from taskqueue.signals import task_ended
from tests.taskqueue.sample_queues import record


@task(queue_name="signals", takes_context=True)
def long_task(context: TaskContext, seconds: float) -> str:
    """Runs up to `seconds`, polling stop_requested(); records its start and how it ended.

    One attempt only (this backend's default max_attempts=1): a stop that counted the attempt, or an
    abandoned run, would fail it for good."""
    task_id = context.task_result.id
    record(f"{task_id} started {os.getpid()}")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stop_requested():
            record(f"{task_id} stopped {os.getpid()}")
            raise Stopped
        time.sleep(0.05)
    record(f"{task_id} finished {os.getpid()}")
    return "finished"


@task(queue_name="signals")
def quick_task() -> str:
    """Finishes at once: the tasks that completed before a shutdown."""
    record(f"quick {os.getpid()}")
    return "quick"


@task(queue_name="signals", takes_context=True)
def stubborn_task(context: TaskContext, seconds: float) -> str:
    """Runs `seconds` and never looks at stop_requested(): only a second signal ends it early."""
    record(f"{context.task_result.id} started {os.getpid()}")
    time.sleep(seconds)
    record(f"{context.task_result.id} finished {os.getpid()}")
    return "finished"


@task(queue_name="signals")
def break_the_next_claim() -> None:
    """Makes this process's next claim raise SystemExit, which no worker loop catches: the thread
    dies."""
    from taskqueue.engine.claim import Claimer

    def die(*args: object, **kwargs: object) -> None:
        raise SystemExit("the claim died")

    record(f"breaking {os.getpid()}")
    Claimer.claim = die


def record_ending(
    sender: object, task_id: int, kind: str, task_path: str, state: str, outcome: str, **kw: object
):
    """taskqueue's task_ended, recorded where TEST_RECORD_ENDINGS asks (worker processes of the
    signal tests)."""
    if os.environ.get("TEST_RECORD_ENDINGS"):
        record(f"ended {task_id} {kind} {state} {outcome} {os.getpid()}")


task_ended.connect(record_ending, dispatch_uid="tests.record_ending")
