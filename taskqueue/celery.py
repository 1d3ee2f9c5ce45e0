"""Front door 3: a Celery-style API on the engine, as in django-taskq, for code moving off Celery.

    from taskqueue.celery import shared_task, AsyncResult

    @shared_task(autoretry_for=(SMTPException,), retry_kwargs={"max_retries": 5, "countdown": 10})
    def send_receipt(order_id: int) -> None: ...

    send_receipt.delay(42)
    result = send_receipt.apply_async((42,), countdown=60, queue="email", priority=5)
    AsyncResult(result.id).revoke()

Settings read: CELERY_TASK_ALWAYS_EAGER (run inline, for tests) and CELERY_TASK_EAGER_PROPAGATES
(eager exceptions are raised). Not offered: bound tasks, chains and groups, result backends other
than the task table.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from taskqueue.conf import seconds
from taskqueue.engine import executors, operations, registry
from taskqueue.engine.claim import ClaimedTask
from taskqueue.engine.concurrency import ConcurrencyRule, call_arguments, concurrency_rule
from taskqueue.engine.enqueue import TaskSpec, enqueue
from taskqueue.engine.executors import FrontDoor, Scheduled, TaskControl
from taskqueue.exceptions import TaskFailed, TaskQueueError, UndeclaredTask
from taskqueue.models import Status
from taskqueue.models import Task as TaskRow
from taskqueue.serialization import ErrorInfo, call_payload

KIND = "celery"


class states:
    PENDING = "PENDING"
    STARTED = "STARTED"
    RETRY = "RETRY"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVOKED = "REVOKED"
    READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})


@dataclass(frozen=True)
class RetryPolicy:
    """Celery's automatic retries: which exceptions, how many times, how long to wait."""

    autoretry_for: tuple[type[BaseException], ...] = ()
    max_retries: int = 3
    countdown: float = 180.0
    backoff: bool | float = False
    backoff_max: float = 600.0
    jitter: bool = True

    def __post_init__(self) -> None:
        """Refuse, at definition, a policy that would compute a wait no clock can keep."""
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more.")
        if not (math.isfinite(self.countdown) and self.countdown >= 0):
            raise ValueError(
                "countdown (default_retry_delay) must be a finite number of seconds >= 0, "
                f"got {self.countdown!r}."
            )
        backoff = self.backoff
        if not isinstance(backoff, bool) and not (
            isinstance(backoff, int | float) and math.isfinite(backoff) and backoff >= 1
        ):
            raise ValueError(
                "retry_backoff must be True, False or a factor of 1 or more (seconds), "
                f"got {backoff!r}."
            )
        if not (
            isinstance(self.backoff_max, int | float)
            and math.isfinite(self.backoff_max)
            and self.backoff_max > 0
        ):
            raise ValueError(
                "retry_backoff_max must be a finite number of seconds above 0, "
                f"got {self.backoff_max!r}."
            )

    def delay(self, retries: int) -> float:
        """Seconds before retry number `retries + 1`, as Celery computes them."""
        if not self.backoff:
            return self.countdown
        base = 1.0 if self.backoff is True else float(self.backoff)
        delay = min(base * 2**retries, self.backoff_max)
        return random.uniform(0, delay) if self.jitter else delay


class SharedTask:
    """A function made a task by `@shared_task`; calling it still runs it right here."""

    def __init__(
        self,
        func: Callable[..., Any],
        queue: str,
        priority: int,
        policy: RetryPolicy,
        concurrency: ConcurrencyRule | None = None,
        soft_time_limit: float | None = None,
        time_limit: float | None = None,
    ) -> None:
        for name, limit in (("soft_time_limit", soft_time_limit), ("time_limit", time_limit)):
            if limit is not None and not seconds(limit):
                raise ValueError(
                    f"{name} must be None or a positive number of seconds, got {limit!r}."
                )
        if soft_time_limit is not None and time_limit is not None and time_limit <= soft_time_limit:
            raise ValueError("time_limit (hard) must be longer than soft_time_limit.")
        if "<locals>" in func.__qualname__:
            raise TaskQueueError(
                f"{func.__qualname__}: define tasks at module level, so workers can import them."
            )
        self.func = func
        self.name = registry.declare(KIND, func.__module__, func.__qualname__)
        self.queue = queue
        self.priority = priority
        self.policy = policy
        self.concurrency = concurrency
        # Celery's: TimeLimitExceeded is raised in the task at soft_time_limit; at time_limit
        # (default: soft_time_limit + TASKQUEUE["TIMEOUT_GRACE"]) its worker process is ended.
        self.soft_time_limit = soft_time_limit
        self.time_limit = time_limit
        self.__doc__ = func.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<@shared_task {self.name}>"

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult | EagerResult:
        return self.apply_async(args, kwargs)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        return Signature(self, args, kwargs)

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
    ) -> AsyncResult | EagerResult:
        """Enqueue (joining the caller's transaction), or run now in eager mode."""
        if countdown is not None and eta is not None:
            raise TypeError("Give countdown or eta, not both.")
        args, kwargs = list(args or ()), dict(kwargs or {})
        if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
            return self._run_eagerly(args, kwargs)
        if eta is not None and timezone.is_naive(eta):
            raise TypeError("eta must be an aware datetime.")
        run_at = timezone.now() + timedelta(seconds=countdown) if countdown is not None else eta
        task_id = enqueue(
            TaskSpec(
                kind=KIND,
                task_path=self.name,
                payload=call_payload(args, kwargs),
                queue_name=queue or self.queue,
                priority=self.priority if priority is None else priority,
                run_at=run_at,
                max_attempts=self.policy.max_retries + 1,
                concurrency=(
                    self.concurrency.resolve(args, call_arguments(self.func, args, kwargs))
                    if self.concurrency
                    else None
                ),
            )
        )
        return AsyncResult(str(task_id))

    def _run_eagerly(self, args: list[Any], kwargs: dict[str, Any]) -> EagerResult:
        """Run now, retrying inline (without waiting, as Celery's eager mode does) what
        `autoretry_for` names, up to `max_retries` times."""
        retries = 0
        while True:
            try:
                value = self.func(*args, **kwargs)
            except Exception as error:
                if (
                    isinstance(error, self.policy.autoretry_for)
                    and retries < self.policy.max_retries
                ):
                    retries += 1
                    continue
                if getattr(settings, "CELERY_TASK_EAGER_PROPAGATES", False):
                    raise
                return EagerResult(states.FAILURE, error, retries=retries)
            return EagerResult(states.SUCCESS, value, retries=retries)


@dataclass(frozen=True)
class Signature:
    """`task.s(*args)`: a call waiting to be sent, with `apply_async(**options)` or `delay()`."""

    task: SharedTask
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def apply_async(self, **options: Any) -> AsyncResult | EagerResult:
        return self.task.apply_async(self.args, self.kwargs, **options)

    def delay(self) -> AsyncResult | EagerResult:
        return self.apply_async()


def shared_task(
    func: Callable[..., Any] | None = None,
    *,
    autoretry_for: tuple[type[BaseException], ...] = (),
    retry_kwargs: dict[str, Any] | None = None,
    retry_backoff: bool | float = False,
    retry_backoff_max: float = 600.0,
    retry_jitter: bool = True,
    max_retries: int = 3,
    default_retry_delay: float = 180.0,
    queue: str = "default",
    priority: int = 0,
    concurrency_key: str | Callable[..., str] | None = None,
    concurrency_limit: int = 1,
    concurrency_duration: float = 300.0,
    on_conflict: str = "wait",
    soft_time_limit: float | None = None,
    time_limit: float | None = None,
) -> Any:
    """Make a function a task, with Celery's names for its options (and a concurrency limit, as
    queue classes and django.tasks tasks have one)."""
    retry_kwargs = dict(retry_kwargs or {})
    unknown = set(retry_kwargs) - {"max_retries", "countdown"}
    if unknown:
        raise TypeError(f"retry_kwargs takes max_retries and countdown, not {sorted(unknown)}.")
    policy = RetryPolicy(
        autoretry_for=tuple(autoretry_for),
        max_retries=int(retry_kwargs.get("max_retries", max_retries)),
        countdown=float(retry_kwargs.get("countdown", default_retry_delay)),
        backoff=retry_backoff,
        backoff_max=retry_backoff_max,
        jitter=retry_jitter,
    )

    limit = concurrency_rule(concurrency_key, concurrency_limit, concurrency_duration, on_conflict)

    def decorate(function: Callable[..., Any]) -> SharedTask:
        return SharedTask(
            function,
            queue=queue,
            priority=priority,
            policy=policy,
            concurrency=limit,
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
        )

    return decorate(func) if func is not None else decorate


class AsyncResult:
    """The state of an enqueued task, read from the task table on every access."""

    # Every engine state, as Celery names it (test_statuses checks none is missing).
    STATES = {
        Status.READY: states.PENDING,
        Status.BLOCKED: states.PENDING,  # waiting for a concurrency slot: Celery has no word for it
        Status.RUNNING: states.STARTED,
        Status.SUCCEEDED: states.SUCCESS,
        Status.FAILED: states.FAILURE,
        Status.CANCELLED: states.REVOKED,
    }

    def __init__(self, id: str) -> None:
        self.id = str(id)

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def _row(self) -> TaskRow | None:
        """The task's row; None for an id the table does not hold (never enqueued, or pruned after
        RESULT_RETENTION), which reads PENDING, as Celery reads an id its backend does not know."""
        try:
            return TaskRow.objects.filter(pk=int(self.id)).first()
        except (ValueError, OverflowError):
            return None

    @property
    def status(self) -> str:
        row = self._row()
        if row is None:
            return states.PENDING
        if row.status in (Status.READY, Status.BLOCKED) and row.error_history:
            return states.RETRY  # waiting again after a failed attempt
        return self.STATES[Status(row.status)]

    state = status

    @property
    def result(self) -> Any:
        """The return value once SUCCESS; the error (as TaskFailed) once FAILURE; else None."""
        row = self._row()
        if row is None:
            return None
        if row.status == Status.SUCCEEDED:
            return row.return_value
        if row.status == Status.FAILED and row.error_history:
            error = row.error_history[-1]
            return TaskFailed(error["exc_class"], error["message"], error["traceback"])
        return None

    def ready(self) -> bool:
        return self.status in states.READY_STATES

    def successful(self) -> bool:
        return self.status == states.SUCCESS

    def failed(self) -> bool:
        return self.status == states.FAILURE

    def get(
        self, timeout: float | None = None, interval: float = 0.2, propagate: bool = True
    ) -> Any:
        """Wait for the task to finish and return its value (raising TaskFailed for a failure)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ready():
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"Task {self.id} did not finish within {timeout}s.")
            time.sleep(interval)
        value = self.result
        if isinstance(value, TaskFailed) and propagate:
            raise value
        return value

    def revoke(self) -> None:
        """A waiting task will never start; a running one is asked to stop (see `stop_requested()`).
        An unknown id has nothing to revoke."""
        try:
            task_id = int(self.id)
        except ValueError:
            return
        if -(2**63) <= task_id < 2**63:
            operations.cancel([task_id])


@dataclass(frozen=True)
class EagerResult:
    """What `apply_async` returns in eager mode: the task already ran."""

    status: str
    value: Any
    id: str = "eager"
    retries: int = 0  # automatic retries it took

    @property
    def state(self) -> str:
        return self.status

    @property
    def result(self) -> Any:
        return self.value

    def ready(self) -> bool:
        return True

    def successful(self) -> bool:
        return self.status == states.SUCCESS

    def failed(self) -> bool:
        return self.status == states.FAILURE

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        if self.status == states.FAILURE and propagate:
            raise self.value
        return self.value

    def revoke(self) -> None:
        """Nothing to revoke: it already ran."""


@dataclass(frozen=True)
class CeleryAttempt:
    """One attempt of a `@shared_task`: the function called, retried on `autoretry_for` as Celery
    waits."""

    task: SharedTask
    claimed: ClaimedTask

    def __call__(self) -> Any:
        return self.task.func(
            *self.claimed.payload.get("args", []), **self.claimed.payload.get("kwargs", {})
        )

    def retry_delay(self, error: BaseException) -> timedelta | None:
        if not isinstance(error, self.task.policy.autoretry_for):
            return None
        return timedelta(seconds=self.task.policy.delay(retries=self.claimed.attempts - 1))

    def time_limits(self) -> tuple[float | None, float | None]:
        return self.task.soft_time_limit, self.task.time_limit

    def after_write(self, state: str, value: Any, error: ErrorInfo | None) -> None:
        return None


def prepare(claimed: ClaimedTask, control: TaskControl) -> CeleryAttempt:
    task = registry.resolve(claimed.task_path, KIND)
    if not isinstance(task, SharedTask):
        raise UndeclaredTask(f"{claimed.task_path} is no @shared_task.")
    return CeleryAttempt(task, claimed)


def enqueue_scheduled(task: SharedTask, run: Scheduled) -> int:
    result = task.apply_async(run.args, run.kwargs, queue=run.queue_name, priority=run.priority)
    return int(result.id)


executors.register(FrontDoor(KIND, prepare, enqueue_scheduled))
