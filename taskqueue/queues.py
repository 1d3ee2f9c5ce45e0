"""Front door 1: queue classes (`BaseQueue.add_task` / `process(task_info)`), as in
django-task-queue.

class EmailQueue(BaseQueue[Email]):
    queue_name = "email"
    max_attempts = 5
    retry_on = (SMTPException,)

    @classmethod
    def process(cls, task_info: TaskInfo[Email]) -> Retry | None:
        send(task_info.get_arg())
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from taskqueue.conf import seconds
from taskqueue.engine import executors, registry
from taskqueue.engine.claim import ClaimedTask
from taskqueue.engine.concurrency import ConcurrencyRule, concurrency_rule, single_argument
from taskqueue.engine.enqueue import TaskSpec, enqueue, enqueue_many
from taskqueue.engine.executors import FrontDoor, RunAgain, Scheduled, TaskControl
from taskqueue.exceptions import TaskQueueError, UndeclaredTask
from taskqueue.models import Status, Task
from taskqueue.serialization import DataclassCodec, ErrorInfo, JsonCodec, PickleCodec

KIND = "queue"
MAX_BACKOFF_SECONDS = 3600.0


@dataclass(frozen=True)
class Retry:
    """Returned from `process`: run the task again at `when` (default: now), counting the attempt or
    not."""

    when: datetime | None = None
    count_attempt: bool = True


class TaskInfo[T]:
    """What `process` gets: the task's argument and facts, and whether its worker wants it to
    stop."""

    def __init__(
        self, task: ClaimedTask, queue: type[BaseQueue[T]], control: TaskControl | None = None
    ) -> None:
        self._task = task
        self._queue = queue
        self._control = control

    @property
    def id(self) -> int:
        return self._task.id

    @property
    def note(self) -> str:
        return self._task.note

    @property
    def priority(self) -> int:
        return self._task.priority

    @property
    def attempt_count(self) -> int:
        """Counted attempts before this one (0 on the first run)."""
        return max(self._task.attempts - 1, 0)

    def get_arg(self) -> T:
        """The argument given to `add_task`; raises DeserializationExc if it cannot be decoded."""
        return self._queue.codec().decode(self._task.payload)

    def stop_requested(self) -> bool:
        """True when the worker is shutting down: return `Retry(count_attempt=False)` soon."""
        return self._control is not None and self._control.stop_requested()

    def __repr__(self) -> str:
        return (
            f"<TaskInfo id={self.id} queue={self._queue.queue_name!r} "
            f"attempt_count={self.attempt_count}>"
        )


class BaseQueue[T]:
    """Subclass and override `process`. Class attributes set the defaults of the queue's tasks."""

    #: Queue the tasks go to; by default the class's own dotted path (each class is its own queue).
    queue_name: ClassVar[str]
    priority: ClassVar[int] = 0
    #: Counted attempts a task may use when it is retried automatically (see retry_on,
    #: retry_abandoned).
    max_attempts: ClassVar[int] = 3
    #: Exceptions that retry the task (with backoff) instead of failing it, while attempts remain.
    retry_on: ClassVar[tuple[type[BaseException], ...]] = ()
    #: Seconds before the second attempt; doubles with each attempt, capped at an hour.
    retry_backoff: ClassVar[float] = 1.0
    #: Whether a task whose worker died is retried (while attempts remain) or failed at once.
    retry_abandoned: ClassVar[bool] = True
    #: The dataclass arguments are stored as (JSON); by default the type argument of BaseQueue[T].
    arg_type: ClassVar[type | None] = None
    #: Store arguments with pickle. Unpickling runs code: only where no one else can write the
    #: table.
    pickle_args: ClassVar[bool] = False
    #: A concurrency limit: a key over the argument ("account:{account_id}", or a callable taking
    #: the argument's fields), at most `concurrency_limit` unfinished tasks per key, each slot held
    #: at most `concurrency_duration` seconds; on conflict "wait" (blocked until a slot frees) or
    #: "discard".
    concurrency_key: ClassVar[str | Callable[..., str] | None] = None
    concurrency_limit: ClassVar[int] = 1
    concurrency_duration: ClassVar[float] = 300.0
    on_conflict: ClassVar[str] = "wait"
    #: Seconds a task may run: then TimeLimitExceeded is raised in it, and
    #: TASKQUEUE["TIMEOUT_GRACE"] later its worker process is ended.
    #: None: TASKQUEUE["DEFAULT_TIMEOUT"].
    timeout: ClassVar[float | None] = None
    _concurrency: ClassVar[ConcurrencyRule | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        backoff = cls.retry_backoff
        if (
            isinstance(backoff, bool)
            or not isinstance(backoff, int | float)
            or not 0 <= backoff < float("inf")
        ):
            raise TaskQueueError(
                f"{cls.path()}.retry_backoff must be finite seconds >= 0, not {backoff!r}."
            )
        if cls.timeout is not None and not seconds(cls.timeout):
            raise TaskQueueError(
                f"{cls.path()}.timeout must be None or positive seconds, not {cls.timeout!r}."
            )
        registry.declare(KIND, cls.__module__, cls.__qualname__)
        if "queue_name" not in cls.__dict__:
            cls.queue_name = cls.path()
        if cls.arg_type is None:
            cls.arg_type = _declared_dataclass(cls)
        cls._concurrency = concurrency_rule(
            cls.concurrency_key, cls.concurrency_limit, cls.concurrency_duration, cls.on_conflict
        )

    @classmethod
    def path(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    @classmethod
    def codec(cls) -> JsonCodec | DataclassCodec | PickleCodec:
        if cls.pickle_args:
            return PickleCodec()
        if cls.arg_type is not None:
            return DataclassCodec(cls.arg_type)
        return JsonCodec()

    @classmethod
    def process(cls, task_info: TaskInfo[T]) -> Retry | None:
        raise NotImplementedError(
            f"{cls.path()} must override the classmethod process(cls, task_info)."
        )

    @classmethod
    def add_task(
        cls,
        arg: T,
        note: str | None = None,
        priority: int | None = None,
        first_attempt_datetime: datetime | None = None,
        dupe_key: str | None = None,
    ) -> TaskInfo[T]:
        """Enqueue `arg`. Raises SerializationError (nothing stored) or DupeKeyExc."""
        spec = cls._spec(arg, note, priority, first_attempt_datetime, dupe_key)
        return cls._info(enqueue(spec), spec)

    @classmethod
    def add_tasks(
        cls,
        args: Iterable[T],
        note: str | None = None,
        priority: int | None = None,
        first_attempt_datetime: datetime | None = None,
    ) -> list[TaskInfo[T]]:
        """Enqueue many arguments with multi-row inserts: all are stored, or (on any bad one)
        none."""
        specs = [cls._spec(arg, note, priority, first_attempt_datetime, None) for arg in args]
        return [
            cls._info(task_id, spec)
            for task_id, spec in zip(enqueue_many(specs), specs, strict=True)
        ]

    @classmethod
    def _spec(
        cls,
        arg: T,
        note: str | None,
        priority: int | None,
        run_at: datetime | None,
        dupe_key: str | None,
    ) -> TaskSpec:
        if "<locals>" in cls.__qualname__:
            raise TaskQueueError(
                f"{cls.path()} is defined inside a function: define queue classes at module level, "
                "so worker processes can import them."
            )
        return TaskSpec(
            kind=KIND,
            task_path=cls.path(),
            payload=cls.codec().encode(arg),
            queue_name=cls.queue_name,
            priority=cls.priority if priority is None else priority,
            run_at=run_at,
            note=note or "",
            dupe_key=dupe_key,
            max_attempts=cls.max_attempts,
            retry_abandoned=cls.retry_abandoned,
            concurrency=cls._concurrency.resolve([], single_argument(arg))
            if cls._concurrency
            else None,
        )

    @classmethod
    def _info(cls, task_id: int, spec: TaskSpec) -> TaskInfo[T]:
        stored = ClaimedTask(
            id=task_id,
            kind=KIND,
            task_path=spec.task_path,
            queue_name=spec.queue_name,
            payload=spec.payload,
            note=spec.note,
            priority=spec.priority,
            attempts=0,
            max_attempts=spec.max_attempts,
            errors=[],
        )
        return TaskInfo(stored, cls)

    @classmethod
    def count(cls) -> int:
        """Tasks of this queue class waiting to run (ready or scheduled)."""
        return Task.objects.filter(
            queue_name=cls.queue_name, task_path=cls.path(), status=Status.READY
        ).count()


def _declared_dataclass(cls: type) -> type | None:
    for base in getattr(cls, "__orig_bases__", ()):
        for argument in typing.get_args(base):
            if dataclasses.is_dataclass(argument) and isinstance(argument, type):
                return argument
    return None


def backoff_delay(queue: type[BaseQueue[Any]], attempts: int) -> timedelta:
    return timedelta(
        seconds=min(queue.retry_backoff * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)
    )


@dataclass(frozen=True)
class QueueAttempt:
    """One attempt of a queue class's task: `process(task_info)`, retried on `retry_on` with
    backoff."""

    queue: type[BaseQueue[Any]]
    task: ClaimedTask
    control: TaskControl

    def __call__(self) -> RunAgain | None:
        answer = self.queue.process(TaskInfo(self.task, self.queue, self.control))
        return RunAgain(answer.when, answer.count_attempt) if isinstance(answer, Retry) else None

    def retry_delay(self, error: BaseException) -> timedelta | None:
        return (
            backoff_delay(self.queue, self.task.attempts)
            if isinstance(error, self.queue.retry_on)
            else None
        )

    def time_limits(self) -> tuple[float | None, float | None]:
        return self.queue.timeout, None

    def after_write(self, state: str, value: Any, error: ErrorInfo | None) -> None:
        return None


def prepare(task: ClaimedTask, control: TaskControl) -> QueueAttempt:
    queue = registry.resolve(task.task_path, KIND)
    if not (isinstance(queue, type) and issubclass(queue, BaseQueue)):
        raise UndeclaredTask(f"{task.task_path} is not a BaseQueue subclass.")
    return QueueAttempt(queue, task, control)


def enqueue_scheduled(queue: type[BaseQueue[Any]], run: Scheduled) -> int:
    """A recurring run: the schedule's first argument is the task's argument."""
    return queue.add_task(
        run.args[0] if run.args else None, note=run.note, priority=run.priority
    ).id


executors.register(FrontDoor(KIND, prepare, enqueue_scheduled))
