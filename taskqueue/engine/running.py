"""The one run policy: run a claimed task's attempt, as its front door prepared it, and turn what it
returned, raised or was asked to do (stop, cancel) into the task's outcome. Logged here, once.

- A return value is the result (it must be JSON); a RunAgain runs the task again.
- `Stopped` raised when asked to stop: cancelled, if it was cancelled; otherwise (its worker is
  shutting down) back to the queue with the attempt uncounted.
- Any other exception, SystemExit and KeyboardInterrupt included: retried after the front door's
  delay while the task has attempts left (`max_attempts`, as stored at enqueue) and the front door
  gives one; failed otherwise, its error kept.
- Work that completed is a success even if a cancel came meanwhile; a retry asked for after a cancel
  ends cancelled.
- Past its soft time limit, TimeLimitExceeded is raised in the task (see TaskControl.time_out);
  whatever the attempt then ends with is recorded as that error, retried or failed by the task's
  rules.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.utils import timezone

from taskqueue.engine.claim import ClaimedTask
from taskqueue.engine.executors import (
    CANCELLED,
    FAILED,
    SUCCEEDED,
    Attempt,
    RunAgain,
    TaskControl,
    door_for,
)
from taskqueue.engine.outcomes import Cancelled, Failed, Outcome, RetryLater, Succeeded
from taskqueue.exceptions import DeserializationExc, Stopped, TimeLimitExceeded, UnknownTaskKind
from taskqueue.serialization import ErrorInfo, return_value

logger = logging.getLogger("taskqueue.task")

_current = threading.local()


def stop_requested() -> bool:
    """Whether the task running in this thread should stop: its worker is shutting down, or it was
    cancelled (revoked). Long tasks of any front door poll this and return early."""
    control: TaskControl | None = getattr(_current, "control", None)
    return control is not None and control.stop_requested()


def cancel_requested() -> bool:
    """Whether the task running in this thread was cancelled, as opposed to stopped by its worker's
    shutdown (after which it runs again): a task that keeps its own records may need to tell them
    apart."""
    control: TaskControl | None = getattr(_current, "control", None)
    return control is not None and control.cancelled.is_set()


def run_task(task: ClaimedTask, control: TaskControl) -> Outcome:
    """Run one task. Never raises: whatever the task does becomes its outcome."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "task started id=%s queue=%s path=%s attempt=%s",
            task.id,
            task.queue_name,
            task.task_path,
            task.attempts,
        )
    started = time.perf_counter()
    _current.control = control
    attempt: Attempt | None = None
    try:
        if task.problem is not None:
            raise DeserializationExc(task.problem)
        door = door_for(task.kind)
        if door is None:
            raise UnknownTaskKind(
                f"No front door runs tasks of kind {task.kind!r} (is its module imported?)"
            )
        attempt = door.prepare(task, control)
        control.arm(attempt, time.monotonic())
        answer = attempt()
        value = None if isinstance(answer, RunAgain) else return_value(answer)
        control.disarm()
    except BaseException as error:  # a task must never take its worker down
        control.disarm()
        outcome = after_error(task, control, attempt, error)
    else:
        outcome = after_return(task, attempt, answer, value)
    finally:
        _current.control = None
    if isinstance(outcome, RetryLater) and control.cancelled.is_set():
        # Stopped because it was cancelled, not to run again.
        outcome = Cancelled(
            task, after_write=attempt.after_write(CANCELLED, None, None) if attempt else None
        )
    log_outcome(outcome, time.perf_counter() - started)
    return outcome


def after_return(task: ClaimedTask, attempt: Attempt, answer: Any, value: Any) -> Outcome:
    if isinstance(answer, RunAgain):
        return RetryLater(task, answer.when, count_attempt=answer.count_attempt)
    return Succeeded(task, value, after_write=attempt.after_write(SUCCEEDED, value, None))


def after_error(
    task: ClaimedTask, control: TaskControl, attempt: Attempt | None, error: BaseException
) -> Outcome:
    if control.timed_out.is_set() and not isinstance(error, TimeLimitExceeded):
        # It stopped (or broke) because its time was up: an attempt that timed out, by the task's
        # rules.
        error = TimeLimitExceeded(
            f"The task ran past its time limit and ended with {type(error).__name__}: {error}"
        )
    info = ErrorInfo.from_exception(error)
    if isinstance(error, Stopped) and control.stop_requested():
        if control.cancelled.is_set():
            return Cancelled(
                task, after_write=attempt.after_write(CANCELLED, None, info) if attempt else None
            )
        return RetryLater(task, count_attempt=False)
    if attempt is not None and task.attempts < task.max_attempts:
        try:
            delay = attempt.retry_delay(error)
        except Exception as policy_error:  # a broken backoff fails the task, saying so
            info = ErrorInfo.from_exception(policy_error)
            delay = None
        if delay is not None:
            return RetryLater(task, timezone.now() + delay, error=info)
    return Failed(
        task, info, after_write=attempt.after_write(FAILED, None, info) if attempt else None
    )


def log_outcome(outcome: Outcome, seconds: float) -> None:
    task = outcome.task
    if isinstance(outcome, Succeeded):
        level, event, detail = logging.INFO, "succeeded", ""
    elif isinstance(outcome, RetryLater):
        level, event = logging.WARNING if outcome.error else logging.INFO, "retry"
        detail = (
            f" run_at={outcome.run_at.isoformat() if outcome.run_at else 'now'}"
            f" counted={outcome.count_attempt}"
        )
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
