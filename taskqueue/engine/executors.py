"""How the front doors plug into the engine: for its kind of task, each registers how to prepare one
attempt (find the declared task, bind its arguments), how long to wait before retrying an error, and
how to enqueue its task for a recurring schedule. None decides what becomes of an attempt: the one run
policy in `taskqueue.engine.running` turns its return value, exception or stop into the outcome.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from taskqueue.engine.claim import ClaimedTask
    from taskqueue.serialization import ErrorInfo

#: The states an attempt's `after_write` hook is told its task ended in.
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"

#: What a front door does once an attempt's final outcome is stored (django.tasks' task_finished, say),
#: given the time stored as the task's finish.
AfterWrite = Callable[[datetime], None] | None


@dataclass
class TaskControl:
    """What a running task may ask of its worker: whether it should stop now, and who runs it."""

    worker_stopping: threading.Event
    worker_name: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)

    def stop_requested(self) -> bool:
        return self.worker_stopping.is_set() or self.cancelled.is_set()


@dataclass(frozen=True, slots=True)
class RunAgain:
    """Returned by an attempt to have its task run again at `when` (None: now), counting the attempt
    or not: a queue class's `Retry`."""

    when: datetime | None = None
    count_attempt: bool = True


class Attempt(Protocol):
    """One attempt of one task, as its front door prepared it."""

    def __call__(self) -> Any:
        """Run the task. What it returns is the task's result (it must be JSON), or a RunAgain."""

    def retry_delay(self, error: BaseException) -> timedelta | None:
        """Asked when the attempt raised `error` and attempts remain: how long until the next one, or
        None to fail the task now."""

    def after_write(self, state: str, value: Any, error: ErrorInfo | None) -> AfterWrite:
        """What to do once the task's final outcome (SUCCEEDED, FAILED or CANCELLED) is stored."""


@dataclass(frozen=True)
class FrontDoor:
    """A front door, as the engine knows it."""

    kind: str  # the `kind` of the task rows it enqueues
    #: The attempt of a claimed task; raises (UndeclaredTask, say) if it cannot be run at all.
    prepare: Callable[[ClaimedTask, TaskControl], Attempt]
    #: Enqueue one run of the declared task `target` for a recurring schedule; returns the task id.
    enqueue: Callable[[Any, Scheduled], int]
    #: What it needs done once in each worker process.
    on_worker_start: Callable[[], None] | None = None


@dataclass(frozen=True)
class Scheduled:
    """One run of a recurring task to enqueue: its arguments and the schedule's overrides."""

    args: list[Any]
    kwargs: dict[str, Any]
    queue_name: str | None
    priority: int | None
    note: str


_doors: dict[str, FrontDoor] = {}


def register(door: FrontDoor) -> None:
    _doors[door.kind] = door


def door_for(kind: str) -> FrontDoor | None:
    return _doors.get(kind)


def worker_starting() -> None:
    for door in _doors.values():
        if door.on_worker_start is not None:
            door.on_worker_start()
