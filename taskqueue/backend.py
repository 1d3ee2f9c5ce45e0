"""Front door 2: Django's own tasks framework (`django.tasks`, DEP 14) on the engine.

    TASKS = {"default": {"BACKEND": "taskqueue.backend.DatabaseBackend", "QUEUES": [],
                         "OPTIONS": {}}}

    @task(priority=5, queue_name="email", max_attempts=3)
    def send_welcome(user_id: int) -> str: ...

    result = send_welcome.enqueue(42)
    send_welcome.get_result(result.id).status

`max_attempts` and `backoff(exception, task_result)` are this backend's retry policy, shaped like
the one Django is designing, so code written for it will not change when Django ships its own.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from inspect import iscoroutinefunction
from typing import Any

from django.core import checks
from django.db import DEFAULT_DB_ALIAS, transaction
from django.dispatch import Signal
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from taskqueue.conf import load_settings, seconds
from taskqueue.engine import executors, registry
from taskqueue.engine.claim import ClaimedTask
from taskqueue.engine.concurrency import (
    Concurrency,
    ConcurrencyRule,
    call_arguments,
    concurrency_rule,
)
from taskqueue.engine.enqueue import TaskSpec, enqueue, enqueue_many
from taskqueue.engine.executors import SUCCEEDED, AfterWrite, FrontDoor, Scheduled, TaskControl
from taskqueue.exceptions import UndeclaredTask, UndeclaredTaskResult
from taskqueue.models import Status, WorkerProcess
from taskqueue.models import Task as TaskRow
from taskqueue.serialization import ErrorInfo, call_payload

KIND = "django"
MAX_BACKOFF = timedelta(hours=1)
# Every engine state, as django.tasks names it (test_statuses checks none is missing).
STATUSES = {
    Status.READY: TaskResultStatus.READY,
    Status.BLOCKED: TaskResultStatus.READY,  # waiting for a concurrency slot: still to start
    Status.RUNNING: TaskResultStatus.RUNNING,
    Status.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    Status.FAILED: TaskResultStatus.FAILED,
    Status.CANCELLED: TaskResultStatus.FAILED,
}

Backoff = Callable[[BaseException, TaskResult], timedelta | float | None]


def exponential_backoff(exception: BaseException, task_result: TaskResult) -> timedelta:
    """The default wait before attempt n+1: 2**n seconds with ±10% jitter, at most an hour."""
    seconds = min(2.0**task_result.attempts, MAX_BACKOFF.total_seconds())
    return timedelta(seconds=seconds * random.uniform(0.9, 1.1))


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryingTask(Task):
    """A django.tasks Task with a retry policy: up to `max_attempts` attempts (1: no retry), waiting
    `backoff(exception, task_result)` between them (None from backoff: fail now)."""

    max_attempts: int = 1
    backoff: Backoff = exponential_backoff
    concurrency_key: str | Callable[..., str] | None = None
    concurrency_limit: int = 1
    concurrency_duration: float = 300.0
    on_conflict: str = "wait"
    #: Seconds the task may run: then TimeLimitExceeded is raised in it, and
    #: TASKQUEUE["TIMEOUT_GRACE"] later its worker process is ended.
    #: None: TASKQUEUE["DEFAULT_TIMEOUT"].
    timeout: float | None = None

    def concurrency_rule(self) -> ConcurrencyRule | None:
        return concurrency_rule(
            self.concurrency_key,
            self.concurrency_limit,
            self.concurrency_duration,
            self.on_conflict,
        )


class DatabaseBackend(BaseTaskBackend):
    task_class = RetryingTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        max_attempts = getattr(task, "max_attempts", 1)
        if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
            raise InvalidTask(
                f"max_attempts must be a whole number of 1 or more, got {max_attempts!r}."
            )
        timeout = getattr(task, "timeout", None)
        if timeout is not None and not seconds(timeout):
            raise InvalidTask(
                f"timeout must be None or a positive number of seconds, got {timeout!r}."
            )
        if not callable(getattr(task, "backoff", exponential_backoff)):
            raise InvalidTask("backoff must be callable as backoff(exception, task_result).")
        if isinstance(task, RetryingTask):
            try:
                task.concurrency_rule()
            except ValueError as error:
                raise InvalidTask(str(error)) from None
        registry.declare(KIND, task.func.__module__, task.func.__qualname__)

    def enqueue(self, task: Task, args: Sequence[Any], kwargs: dict[str, Any]) -> TaskResult:
        self.validate_task(task)
        spec = self._spec(task, args, kwargs)
        result = self._ready_result(task, str(enqueue(spec)), spec)
        task_enqueued.send(type(self), task_result=result)
        return result

    def enqueue_all(
        self, calls: Iterable[tuple[Task, Sequence[Any], dict[str, Any]]]
    ) -> list[TaskResult]:
        """Enqueue many task calls with multi-row inserts: all are stored, or (on any bad one)
        none."""
        calls = list(calls)
        for task, _, _ in calls:
            self.validate_task(task)
        specs = [self._spec(task, args, kwargs) for task, args, kwargs in calls]
        ids = enqueue_many(specs)
        results = [
            self._ready_result(task, str(task_id), spec)
            for (task, _, _), task_id, spec in zip(calls, ids, specs, strict=True)
        ]
        for result in results:
            task_enqueued.send(type(self), task_result=result)
        return results

    def get_result(self, result_id: str) -> TaskResult:
        try:
            row = TaskRow.objects.get(pk=int(result_id), kind=KIND)
        except (TaskRow.DoesNotExist, ValueError, TypeError):
            raise TaskResultDoesNotExist(result_id) from None
        try:
            return result_from_row(row, self.alias)
        except UndeclaredTask as error:
            raise UndeclaredTaskResult(f"Task {result_id}: {error}") from error

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        from django.apps import apps

        messages: list[checks.CheckMessage] = []
        if not apps.is_installed("taskqueue"):
            messages.append(
                checks.Error(
                    "taskqueue.backend.DatabaseBackend needs 'taskqueue' in INSTALLED_APPS.",
                    id="taskqueue.E002",
                )
            )
        try:
            load_settings(self.options)
        except (TypeError, ValueError) as error:
            messages.append(
                checks.Error(f"TASKS[{self.alias!r}]['OPTIONS']: {error}", id="taskqueue.E003")
            )
        return messages

    def _spec(self, task: Task, args: Sequence[Any], kwargs: dict[str, Any]) -> TaskSpec:
        payload = call_payload(args, kwargs)
        if task.run_after is not None:  # kept as given: a retry moves the row's run time
            payload["run_after"] = task.run_after.isoformat()
        return TaskSpec(
            kind=KIND,
            task_path=task.module_path,
            payload=payload,
            queue_name=task.queue_name,
            priority=task.priority,
            run_at=task.run_after,
            max_attempts=getattr(task, "max_attempts", 1),
            concurrency=self._concurrency(task, payload["args"], payload["kwargs"]),
            enqueued_at=timezone.now(),
        )

    @staticmethod
    def _concurrency(task: Task, args: list[Any], kwargs: dict[str, Any]) -> Concurrency | None:
        rule = task.concurrency_rule() if isinstance(task, RetryingTask) else None
        if rule is None:
            return None
        try:
            return rule.resolve(args, call_arguments(task.func, args, kwargs))
        except ValueError as error:
            raise InvalidTask(str(error)) from None

    def _ready_result(self, task: Task, result_id: str, spec: TaskSpec) -> TaskResult:
        return TaskResult(
            task=task,
            id=result_id,
            status=TaskResultStatus.READY,
            enqueued_at=spec.enqueued_at,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=spec.payload["args"],
            kwargs=spec.payload["kwargs"],
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )


def enqueue_on_commit(
    task: Task, *args: Any, transaction_database: str = DEFAULT_DB_ALIAS, **kwargs: Any
) -> None:
    """Enqueue once the current transaction of `transaction_database` commits (at once outside one).

    For a queue kept on a database of its own: there, enqueueing cannot join the transaction that
    writes the rows the task depends on, so it waits for that transaction's commit instead.
    """
    transaction.on_commit(lambda: task.enqueue(*args, **kwargs), using=transaction_database)


def task_at(path: str) -> Task:
    """The declared django.tasks Task at `path`; raises UndeclaredTask."""
    task = registry.resolve(path, KIND)
    if not isinstance(task, Task):
        raise UndeclaredTask(
            f"{path} is not a django.tasks Task (decorate the function with @task)."
        )
    return task


def task_as_enqueued(path: str, queue_name: str, priority: int, payload: dict[str, Any]) -> Task:
    """The declared Task at `path` with what `using()` changed when it was enqueued (queue,
    priority, run_after), as the stored row says, so code that enqueues `result.task` again means
    the same."""
    task = task_at(path)
    changes: dict[str, Any] = {}
    if queue_name != task.queue_name:
        changes["queue_name"] = queue_name
    if priority != task.priority:
        changes["priority"] = priority
    run_after = (
        parse_datetime(payload["run_after"]) if isinstance(payload.get("run_after"), str) else None
    )
    if run_after is not None:
        changes["run_after"] = run_after
    if not changes:
        return task
    try:
        return task.using(**changes)
    except (InvalidTask, TypeError, ValueError):  # a row edited past what django.tasks allows
        return task


def task_errors(errors: Iterable[Mapping[str, Any]]) -> list[TaskError]:
    return [
        TaskError(exception_class_path=e.get("exc_class", ""), traceback=e.get("traceback", ""))
        for e in errors
    ]


def result_from_row(row: TaskRow, alias: str) -> TaskResult:
    """The TaskResult of a stored task. worker_ids has one entry per attempt: the failed ones from
    the error history, then the last one if it did not fail."""
    ids = [error.get("worker", "") for error in row.error_history]
    if row.status == Status.SUCCEEDED:
        ids.append(row.worker)
    elif row.status == Status.RUNNING and row.claimed_by_id is not None:
        process = WorkerProcess.objects.filter(pk=row.claimed_by_id).first()
        ids.append(str(process) if process else f"worker process {row.claimed_by_id}")
    result: TaskResult = TaskResult(
        task=task_as_enqueued(row.task_path, row.queue_name, row.priority, row.payload),
        id=str(row.pk),
        status=STATUSES[Status(row.status)],
        enqueued_at=row.enqueued_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_attempted_at=row.started_at,
        args=row.payload.get("args", []),
        kwargs=row.payload.get("kwargs", {}),
        backend=alias,
        errors=task_errors(row.error_history),
        worker_ids=ids,
    )
    object.__setattr__(result, "_return_value", row.return_value)
    return result


class DjangoAttempt:
    """One run of a django.tasks task in a worker, and its TaskResult, built only when someone needs
    it: a task_started or task_finished receiver, a TaskContext, or a backoff."""

    def __init__(self, task: Task, claimed: ClaimedTask, control: TaskControl) -> None:
        from django.tasks import task_backends

        self.task = task
        self.claimed = claimed
        self.control = control
        self.backend = task_backends[task.backend]
        self.sender = type(self.backend)

    @functools.cached_property
    def result(self) -> TaskResult:
        claimed = self.claimed
        enqueued_at, started_at = claimed.times()
        return TaskResult(
            task=task_as_enqueued(
                claimed.task_path, claimed.queue_name, claimed.priority, claimed.payload
            ),
            id=str(claimed.id),
            status=TaskResultStatus.RUNNING,
            enqueued_at=enqueued_at,
            started_at=started_at,
            finished_at=None,
            last_attempted_at=started_at,
            args=claimed.payload.get("args", []),
            kwargs=claimed.payload.get("kwargs", {}),
            backend=self.backend.alias,
            errors=task_errors(claimed.errors),
            worker_ids=[*(e.get("worker", "") for e in claimed.errors), self.control.worker_name],
        )

    def __call__(self) -> Any:
        """task_started goes out before the call; task_finished once the outcome is stored (see
        after_write), so its receivers (and get_result) see the same finished result."""
        if listened(task_started, self.sender):
            task_started.send(self.sender, task_result=self.result)
        task, claimed = self.task, self.claimed
        args, kwargs = claimed.payload.get("args", []), claimed.payload.get("kwargs", {})
        if task.takes_context:
            args = [TaskContext(task_result=self.result), *args]
        return task.call(*args, **kwargs) if is_coroutine(task) else task.func(*args, **kwargs)

    def retry_delay(self, error: BaseException) -> timedelta | None:
        """The task's backoff for this failure; None means fail now."""
        delay = getattr(self.task, "backoff", exponential_backoff)(error, self.result)
        if delay is None:
            return None
        return delay if isinstance(delay, timedelta) else timedelta(seconds=float(delay))

    def time_limits(self) -> tuple[float | None, float | None]:
        return getattr(self.task, "timeout", None), None

    def after_write(self, state: str, value: Any, error: ErrorInfo | None) -> AfterWrite:
        """What sends task_finished once the outcome is stored (nothing, when nobody listens). A
        cancelled task ends FAILED: django.tasks has no cancelled state."""
        if not listened(task_finished, self.sender):
            return None
        status = TaskResultStatus.SUCCESSFUL if state == SUCCEEDED else TaskResultStatus.FAILED
        result = self.result

        def send(finished_at: datetime) -> None:
            errors = result.errors + task_errors(
                [error.entry(self.claimed.attempts, "", finished_at)] if error else []
            )
            finished = replace(result, status=status, finished_at=finished_at, errors=errors)
            object.__setattr__(finished, "_return_value", value)
            task_finished.send(self.sender, task_result=finished)

        return send


def listened(signal: Signal, sender: type) -> bool:
    """Whether sending would reach anyone (an empty receiver list is checked first: it is the
    worker's usual case, and the cheap one)."""
    return bool(signal.receivers) and signal.has_listeners(sender)


@functools.cache
def is_coroutine(task: Task) -> bool:
    return iscoroutinefunction(task.func)


def prepare(claimed: ClaimedTask, control: TaskControl) -> DjangoAttempt:
    return DjangoAttempt(task_at(claimed.task_path), claimed, control)


def enqueue_scheduled(task: Task, run: Scheduled) -> int:
    task = task.using(queue_name=run.queue_name, priority=run.priority)  # None: the task's own
    return int(task.enqueue(*run.args, **run.kwargs).id)


def quiet_django_task_logs() -> None:
    """In a worker, its own log line per task (see taskqueue.engine.running) replaces the log
    receivers django.tasks connects to its signals, so a task is not logged three times over."""
    from django.tasks import signals

    task_started.disconnect(signals.log_task_started)
    task_finished.disconnect(signals.log_task_finished)


executors.register(
    FrontDoor(KIND, prepare, enqueue_scheduled, on_worker_start=quiet_django_task_logs)
)
# A Task defined on another backend and enqueued here with `using(backend=...)` is declared only
# where it was enqueued: workers accept it from its task module (see registry.accept).
registry.accept(KIND, lambda target: isinstance(target, Task))
