"""How the front doors plug into the engine: for its kind of task, each registers how to prepare one
attempt (find the declared task, bind its arguments), how long to wait before retrying an error, and
how to enqueue its task for a recurring schedule. None decides what becomes of an attempt: the one
run policy in `taskqueue.engine.running` turns its return value, exception or stop into the outcome.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from taskqueue.exceptions import TimeLimitExceeded

if TYPE_CHECKING:
    from taskqueue.engine.claim import ClaimedTask
    from taskqueue.serialization import ErrorInfo

#: The states an attempt's `after_write` hook is told its task ended in.
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"

#: What a front door does once an attempt's final outcome is stored (django.tasks' task_finished,
#: say), given the time stored as the task's finish.
AfterWrite = Callable[[datetime], None] | None


@dataclass
class TaskControl:
    """What a running task may ask of its worker (whether it should stop now, who runs it), and what
    its worker's watchdog needs to hold it to its time limits (see
    `taskqueue.worker.timelimits`)."""

    worker_stopping: threading.Event
    worker_name: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: TASKQUEUE["DEFAULT_TIMEOUT"] and ["TIMEOUT_GRACE"], for tasks that declare no limits of their
    #: own.
    default_timeout: float | None = None
    timeout_grace: float = 10.0
    #: Set once the task ran past its soft deadline.
    timed_out: threading.Event = field(default_factory=threading.Event)
    #: While the attempt runs: its deadlines (time.monotonic()), its thread, and the attempt itself.
    soft_deadline: float | None = None
    hard_deadline: float | None = None
    thread_id: int | None = None
    attempt: Attempt | None = None
    #: Logged as past its hard limit (a group that cannot end its process says so once).
    past_hard_limit: bool = False
    _armed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def stop_requested(self) -> bool:
        return self.worker_stopping.is_set() or self.cancelled.is_set() or self.timed_out.is_set()

    def arm(self, attempt: Attempt, started: float) -> None:
        """The attempt starts now in this thread: set its deadlines from its limits or the
        defaults."""
        soft, hard = attempt.time_limits()
        soft = soft if soft is not None else (self.default_timeout if hard is None else None)
        if soft is None and hard is None:
            # no limit: nothing for the watchdog to do, and nothing to lock (the common case)
            return
        if hard is None and soft is not None:
            hard = soft + self.timeout_grace
        with self._lock:
            self.attempt, self.thread_id = attempt, threading.get_ident()
            self.soft_deadline = started + soft if soft is not None else None
            self.hard_deadline = started + hard if hard is not None else None
            self._armed = True

    def disarm(self) -> None:
        """The attempt's code is done: no time-limit exception may reach its thread from now on."""
        if not self._armed:
            return  # never armed (no limit), or disarmed already: no exception can be pending
        with self._lock:
            if self._armed and self.timed_out.is_set() and self.thread_id is not None:
                clear_async_exception(self.thread_id)  # one raised just as the task returned
            self._armed = False

    def time_out(self) -> bool:
        """The soft deadline passed: stop_requested() turns true and TimeLimitExceeded is raised in
        the task's thread at its next bytecode. False if the attempt had already ended."""
        with self._lock:
            if not self._armed or self.timed_out.is_set() or self.thread_id is None:
                return False
            self.timed_out.set()
            raise_async_exception(self.thread_id, TimeLimitExceeded)
            return True

    def running(self) -> bool:
        with self._lock:
            return self._armed


def raise_async_exception(thread_id: int, error: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(error))


def clear_async_exception(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


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
        """Asked when the attempt raised `error` and attempts remain: how long until the next one,
        or None to fail the task now."""

    def time_limits(self) -> tuple[float | None, float | None]:
        """The task's own soft and hard time limits in seconds (None: not declared)."""

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
