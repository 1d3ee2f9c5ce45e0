"""Helpers for testing code that enqueues tasks, for every front door.

    from taskqueue.testing import assert_enqueued, run_pending

    def test_sign_up_sends_the_welcome_email(client):
        client.post("/signup/", {...})
        assert_enqueued(WelcomeEmailQueue, arg={"user_id": 1, ...})
        [run] = run_pending(queues=["email"])
        assert run.state == "succeeded"

`run_pending` runs what is waiting in this process, through the worker's own claim, start, run and
record path (retries, concurrency keys and signals included), so a test sees what a worker would do.
With pytest, `pytest_plugins = ["taskqueue.pytest_plugin"]` in a conftest (or
`-p taskqueue.pytest_plugin`) adds the `task_queue` fixture, which gives a test these helpers on
pytest-django's test database.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import router
from django.utils import timezone
from django.utils.json import normalize_json

from taskqueue.engine import liveness
from taskqueue.engine.claim import Claimer, Selector
from taskqueue.engine.executors import TaskControl
from taskqueue.engine.outcomes import (
    Cancelled,
    Failed,
    Outcome,
    Recorder,
    RetryLater,
    Start,
    Succeeded,
)
from taskqueue.engine.running import run_task
from taskqueue.exceptions import DeserializationExc
from taskqueue.models import Status, Task

WORKER_NAME = "taskqueue.testing"
WAITING = (Status.READY, Status.BLOCKED)


@dataclass(frozen=True)
class TaskRun:
    """One attempt `run_pending` ran: the task, and what became of it."""

    id: int
    task_path: str
    #: "succeeded", "retry" (it will run again), "failed" or "cancelled"
    state: str
    return_value: Any = None
    #: The error's class path and message, for "failed" and for a "retry" after an error.
    error: str = ""


def run_pending(
    queues: Sequence[str] = ("*",),
    include_scheduled: bool = False,
    *,
    max_runs: int = 10_000,
    batch: int = 10,
    retention: float = 3600.0,
    control: TaskControl | None = None,
) -> list[TaskRun]:
    """Run the tasks waiting in `queues` (selectors, as the worker takes them) until none is due,
    and return what each attempt came to. A task retried with no wait runs again in the same call.

    `include_scheduled`: also run the tasks scheduled for later (they are made due now). A loop of
    retries longer than `max_runs` attempts raises AssertionError rather than spin. `control`: the
    worker's side of stop_requested(), to test how tasks stop (set its events).
    """
    using = router.db_for_write(Task)
    selectors = list(queues) or ["*"]
    if include_scheduled:
        _bring_forward(using, selectors)
    process = liveness.register(using, WORKER_NAME, selectors, 1)
    runs: list[TaskRun] = []
    try:
        claimer = Claimer(using, process.pk, selectors)
        recorder = Recorder(using, process.pk, WORKER_NAME, retention)
        control = control or TaskControl(threading.Event(), WORKER_NAME)
        while tasks := claimer.claim(batch, timezone.now()):
            for task in tasks:
                if recorder.begin(task) is Start.RUN:
                    outcome = run_task(task, control)
                    recorder.add(outcome)
                    runs.append(task_run(outcome))
            recorder.flush()
            if control.worker_stopping.is_set():
                break
            if len(runs) > max_runs:
                raise AssertionError(
                    f"run_pending ran {len(runs)} attempts and tasks are still due: a retry loop?"
                )
            if include_scheduled:
                _bring_forward(using, selectors)
    finally:
        liveness.deregister(using, process.pk)
    return runs


def _bring_forward(using: str, selectors: list[str]) -> None:
    now = timezone.now()
    waiting = Task.objects.using(using).filter(status=Status.READY, run_at__gt=now)
    if "*" not in selectors:
        ids = [
            task.pk
            for task in waiting.only("pk", "queue_name")
            if any(Selector(text).matches(task.queue_name) for text in selectors)
        ]
        waiting = Task.objects.using(using).filter(pk__in=ids)
    waiting.update(run_at=now)


def task_run(outcome: Outcome) -> TaskRun:
    task = outcome.task
    if isinstance(outcome, Succeeded):
        return TaskRun(task.id, task.task_path, "succeeded", outcome.return_value)
    if isinstance(outcome, RetryLater):
        error = f"{outcome.error.exc_class}: {outcome.error.message}" if outcome.error else ""
        return TaskRun(task.id, task.task_path, "retry", error=error)
    if isinstance(outcome, Failed):
        return TaskRun(
            task.id,
            task.task_path,
            "failed",
            error=f"{outcome.error.exc_class}: {outcome.error.message}",
        )
    assert isinstance(outcome, Cancelled)
    return TaskRun(task.id, task.task_path, "cancelled")


def task_path(task: Any) -> str:
    """The stored path of a queue class, a django.tasks Task, a @shared_task, or a path given as
    text."""
    if isinstance(task, str):
        return task
    if isinstance(task, type):
        return f"{task.__module__}.{task.__qualname__}"
    for attribute in ("module_path", "name"):  # django.tasks' Task, then SharedTask
        path = getattr(task, attribute, None)
        if isinstance(path, str):
            return path
    raise TypeError(f"{task!r} is no queue class, django.tasks task or @shared_task.")


_ANY = object()


def enqueued(
    task: Any, *, arg: Any = _ANY, args: Any = _ANY, kwargs: Any = _ANY, **filters: Any
) -> list[Task]:
    """The waiting (ready, scheduled or blocked) rows of `task`, oldest first: queue class,
    django.tasks task, @shared_task or dotted path. `arg` (queue classes) and `args` / `kwargs` (the
    others) match the stored arguments, as JSON gives them back (tuples as lists); other keywords
    filter the rows (`queue_name="email"`, `priority=5`, `status=...`: then not only waiting
    ones)."""
    rows = Task.objects.using(router.db_for_read(Task)).filter(task_path=task_path(task))
    if "status" not in filters and "status__in" not in filters:
        rows = rows.filter(status__in=WAITING)
    wanted = {
        name: value
        for name, value in (("arg", arg), ("args", args), ("kwargs", kwargs))
        if value is not _ANY
    }
    return [row for row in rows.filter(**filters).order_by("id") if _matches(task, row, wanted)]


def _matches(task: Any, row: Task, wanted: dict[str, Any]) -> bool:
    for name, value in wanted.items():
        if name == "arg" and callable(
            getattr(task, "codec", None)
        ):  # a queue class: its own decoding
            try:
                if task.codec().decode(row.payload) != value:
                    return False
            except DeserializationExc:
                return False
        else:
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = dataclasses.asdict(value)
            if row.payload.get(name) != normalize_json(value):
                return False
    return True


def assert_enqueued(task: Any, count: int | None = None, **filters: Any) -> list[Task]:
    """Fail unless `task` has waiting rows matching `filters` (exactly `count` of them, if given);
    returns them. The message shows what is waiting instead."""
    found = enqueued(task, **filters)
    if (count is None and not found) or (count is not None and len(found) != count):
        wanted = "some" if count is None else str(count)
        raise AssertionError(
            f"Expected {wanted} waiting task(s) of {task_path(task)} matching "
            f"{filters or 'anything'}, found {len(found)}. Waiting: {_describe(enqueued(task))}"
        )
    return found


def assert_not_enqueued(task: Any, **filters: Any) -> None:
    """Fail if `task` has a waiting row matching `filters`."""
    found = enqueued(task, **filters)
    if found:
        raise AssertionError(
            f"Expected no waiting task of {task_path(task)} matching {filters}: {_describe(found)}"
        )


def _describe(rows: list[Task]) -> str:
    if not rows:
        return "none"
    return "; ".join(f"#{row.pk} {row.queue_name} {row.payload}" for row in rows[:10]) + (
        f" (and {len(rows) - 10} more)" if len(rows) > 10 else ""
    )


class TaskQueueFixture:
    """What the `task_queue` pytest fixture gives a test: this module's helpers."""

    run_pending = staticmethod(run_pending)
    enqueued = staticmethod(enqueued)
    assert_enqueued = staticmethod(assert_enqueued)
    assert_not_enqueued = staticmethod(assert_not_enqueued)
