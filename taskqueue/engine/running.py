"""Running one claimed task: find its executor, time it, log it, and turn anything raised into an outcome."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from taskqueue.engine.claim import ClaimedTask
from taskqueue.engine.executors import executor_for
from taskqueue.engine.outcomes import AfterWrite, Cancelled, ErrorInfo, Failed, Outcome, RetryLater, Succeeded
from taskqueue.exceptions import DeserializationExc

logger = logging.getLogger("taskqueue.task")


@dataclass
class TaskControl:
    """What a running task may ask of its worker: whether it should stop now, and who runs it."""

    worker_stopping: threading.Event
    worker_name: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)

    def stop_requested(self) -> bool:
        return self.worker_stopping.is_set() or self.cancelled.is_set()


class UnknownTaskKind(Exception):
    pass


_current = threading.local()


def stop_requested() -> bool:
    """Whether the task running in this thread should stop: its worker is shutting down, or it was
    cancelled (revoked). Long tasks of any front door poll this and return early."""
    control: TaskControl | None = getattr(_current, "control", None)
    return control is not None and control.stop_requested()


def cancel_requested() -> bool:
    """Whether the task running in this thread was cancelled, as opposed to stopped by its worker's
    shutdown (after which it runs again): a task that keeps its own records may need to tell them apart."""
    control: TaskControl | None = getattr(_current, "control", None)
    return control is not None and control.cancelled.is_set()


def stopped(task: ClaimedTask, control: TaskControl, on_cancel: AfterWrite = None) -> Outcome:
    """What a task that raised Stopped, when asked to stop, comes to: cancelled if it was cancelled,
    otherwise (its worker is shutting down) back to the queue with its attempt uncounted.
    Front doors call this from their executors."""
    if control.cancelled.is_set():
        return Cancelled(task, after_write=on_cancel)
    return RetryLater(task, count_attempt=False)


def run_task(task: ClaimedTask, control: TaskControl) -> Outcome:
    """Run one task. Never raises: even SystemExit and KeyboardInterrupt from task code become failures."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "task started id=%s queue=%s path=%s attempt=%s", task.id, task.queue_name, task.task_path, task.attempts
        )
    started = time.perf_counter()
    _current.control = control
    try:
        if task.problem is not None:
            raise DeserializationExc(task.problem)
        executor = executor_for(task.kind)
        if executor is None:
            raise UnknownTaskKind(f"No front door runs tasks of kind {task.kind!r} (is its module imported?)")
        outcome = executor(task, control)
    except BaseException as error:  # a task must never take its worker down
        outcome = Failed(task, ErrorInfo.from_exception(error))
    finally:
        _current.control = None
    if isinstance(outcome, RetryLater) and control.cancelled.is_set():
        # Stopped because it was cancelled, not to run again. (Work that completed is still a success.)
        outcome = Cancelled(task, after_write=outcome.after_write)
    log_outcome(outcome, time.perf_counter() - started)
    return outcome


def log_outcome(outcome: Outcome, seconds: float) -> None:
    task = outcome.task
    if isinstance(outcome, Succeeded):
        level, event, detail = logging.INFO, "succeeded", ""
    elif isinstance(outcome, RetryLater):
        level, event = logging.WARNING if outcome.error else logging.INFO, "retry"
        detail = f" run_at={outcome.run_at.isoformat() if outcome.run_at else 'now'} counted={outcome.count_attempt}"
        if outcome.error:
            detail += f" error={outcome.error.exc_class}: {outcome.error.message[:200]!r}"
    elif isinstance(outcome, Failed):
        level, event = logging.ERROR, "failed"
        detail = f" error={outcome.error.exc_class}: {outcome.error.message[:200]!r}"
    else:
        level, event, detail = logging.INFO, "cancelled", ""
    if logger.isEnabledFor(level):
        logger.log(
            level,
            "task %s id=%s queue=%s path=%s attempt=%s duration_ms=%.1f%s",
            event,
            task.id,
            task.queue_name,
            task.task_path,
            task.attempts,
            seconds * 1000,
            detail,
        )
