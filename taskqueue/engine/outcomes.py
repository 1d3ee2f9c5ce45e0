"""What became of an attempt, and writing that down in batches.

Every write is fenced on the claim it belongs to (`id`, `claims` and `status = running`): if the
task was taken away meanwhile (its worker presumed dead, the task recovered and claimed again), a
late outcome changes nothing and is logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from django.db import connections
from django.utils import timezone

from taskqueue import signals
from taskqueue.engine import concurrency, databases
from taskqueue.engine.claim import ClaimedTask
from taskqueue.engine.databases.base import TABLE, Statement
from taskqueue.models import Status
from taskqueue.serialization import ErrorInfo

logger = logging.getLogger("taskqueue.worker")


# Each outcome may carry `after_write`: what its front door does once the outcome is stored (such as
# sending django.tasks' task_finished signal, whose receivers may read the stored result). It gets
# the time stored as the task's finish.
AfterWrite = Callable[[datetime], None] | None


@dataclass(frozen=True, slots=True)
class Succeeded:
    task: ClaimedTask
    return_value: Any = None
    after_write: AfterWrite = None


@dataclass(frozen=True, slots=True)
class RetryLater:
    task: ClaimedTask
    run_at: datetime | None = None  # None: as soon as possible
    count_attempt: bool = True
    error: ErrorInfo | None = None
    after_write: AfterWrite = None
    # Back in its old place in the queue (its run time kept), as a task that never really ran.
    keep_place: bool = False


@dataclass(frozen=True, slots=True)
class Failed:
    task: ClaimedTask
    error: ErrorInfo
    after_write: AfterWrite = None


@dataclass(frozen=True, slots=True)
class Cancelled:
    task: ClaimedTask
    after_write: AfterWrite = None


Outcome = Succeeded | RetryLater | Failed | Cancelled


FINAL_STATES = {Succeeded: Status.SUCCEEDED, Failed: Status.FAILED, Cancelled: Status.CANCELLED}


def ending(outcome: Succeeded | Failed | Cancelled) -> tuple[int, str, str, str, str]:
    """The task_ended arguments of a final outcome."""
    task, state = outcome.task, FINAL_STATES[type(outcome)]
    return task.id, task.kind, task.task_path, state.value, state.value


def put_back(task: ClaimedTask) -> RetryLater:
    """An attempt that never really ran (shutdown): ready again in its old place, not counted."""
    return RetryLater(task, run_at=None, count_attempt=False, keep_place=True)


# Where a task goes back to when it is to run again: cancelled if a cancel came for it meanwhile (a
# cancel wins), blocked if it has a concurrency key (it waits for a slot like a new task, and is
# promoted in the same transaction if one is free), else ready.
REQUEUE_STATUS = (
    f"CASE WHEN cancel_requested THEN '{Status.CANCELLED}' WHEN concurrency_key IS NOT NULL "
    f"THEN '{Status.BLOCKED}' ELSE '{Status.READY}' END"
)
REQUEUE_FINISHED_AT = "CASE WHEN cancel_requested THEN %s END"
# Every write of an attempt's outcome is fenced on the claim it belongs to.
FENCE = f"id = %s AND claims = %s AND status = '{Status.RUNNING}'"


def storable(value: Any) -> tuple[str, bool]:
    """`value` as JSON text every database stores, and whether anything had to be replaced.

    PostgreSQL's jsonb refuses NUL characters and lone surrogates, which Python strings may hold (a
    return value, an exception's message): those are replaced with U+FFFD instead of failing the
    write forever. The check is a substring test on the encoded text, so ordinary values cost
    nothing more."""
    text = json.dumps(value)
    if "\\u0000" not in text and "\\ud" not in text:
        return text, False
    cleaned = _scrubbed(value)
    return json.dumps(cleaned), cleaned != value


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return "".join(
            "\ufffd" if char == "\x00" or "\ud800" <= char <= "\udfff" else char for char in value
        )
    if isinstance(value, list):
        return [_scrubbed(item) for item in value]
    if isinstance(value, dict):
        return {_scrubbed(key): _scrubbed(item) for key, item in value.items()}
    return value


class Start(Enum):
    """What `Recorder.begin` found when it went to start a task."""

    RUN = "run"
    # A cancel came while it waited in its batch: ended cancelled, never run.
    CANCELLED = "cancelled"
    GONE = "gone"  # no longer held by this claim (its worker was presumed dead): not to be run here


@dataclass
class Recorder:
    """Writes one worker thread's outcomes and starts, each fenced on the claim it belongs to.

    `begin(task)` writes the pending outcomes and starts `task` in one transaction, just before it
    runs: so a finished task's outcome is durable before the next task of its batch starts, and a
    task is charged an attempt only once it really starts. `flush()` writes what is pending (at the
    end of a batch, before the next claim).
    """

    using: str
    worker_id: int
    worker_name: str
    retention: float
    pending: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.database = databases.for_alias(self.using)

    def add(self, outcome: Outcome) -> None:
        self.pending.append(outcome)

    def flush(self) -> None:
        """Write every pending outcome in one transaction, then run their after-write hooks.

        On a database error the outcomes stay pending, to be written by the next call.
        """
        if self.pending:
            self._write(None)

    def begin(self, task: ClaimedTask) -> Start:
        """Write the pending outcomes and start `task` (count its attempt, stamp its start) at once.

        On a database error nothing changed: the outcomes stay pending and the task is not
        started."""
        return self._write(task)

    def _write(self, starting: ClaimedTask | None) -> Start:
        connection = connections[self.using]
        database = self.database
        writer = _Writer(connection, database.json_param, self.worker_name, timezone.now())
        statements = [writer.outcome(outcome, self.retention) for outcome in self.pending]
        if starting is not None:
            statements.append(writer.start(starting))
        keys = {o.task.concurrency_key for o in self.pending if o.task.concurrency_key}
        if starting is not None and starting.concurrency_key:
            keys.add(starting.concurrency_key)
        connection.ensure_connection()
        if self._tuned_on is not connection.connection:
            database.tune_writer(connection)
            self._tuned_on = connection.connection
        results = database.write(
            connection, statements, (lambda: self._promote(keys, writer.now)) if keys else None
        )
        written = [
            o for o, changed in zip(self.pending, results, strict=False) if _kept(o, changed)
        ]
        start = writer.started(starting, results[-1]) if starting is not None else Start.RUN
        self.pending = []
        for outcome in written:
            if outcome.after_write is not None:
                try:
                    outcome.after_write(writer.now)
                except Exception:
                    logger.exception("after-write hook of task %s failed", outcome.task.id)
        if written and signals.listened():
            signals.send_ended(
                ending(outcome) for outcome in written if not isinstance(outcome, RetryLater)
            )
        return start

    def _promote(self, keys: set[str], now: datetime) -> None:
        # Slots freed by finished tasks, and retried tasks waiting for one, are settled in the same
        # transaction; keys are locked in one order, so two processes never deadlock on them.
        for key in sorted(keys):
            concurrency.promote(self.using, key, now)

    # The connection this recorder's writes were tuned on (see Database.tune_writer).
    _tuned_on: Any = None


def _kept(outcome: Outcome, changed: int) -> bool:
    if changed == 1:
        return True
    logger.warning(
        "stale outcome dropped: task id=%s claim=%s is no longer held by this worker "
        "(it was presumed dead)",
        outcome.task.id,
        outcome.task.claims,
    )
    return False


class _Writer:
    """The statements of one write. Each is fenced: only the claim it belongs to can change a row,
    so a write from a worker that was presumed dead (and replaced) changes nothing, and is
    logged."""

    def __init__(self, connection: Any, json_param: str, worker_name: str, now: datetime) -> None:
        self.worker_name = worker_name
        self.now = now
        self.stamp = connection.ops.adapt_datetimefield_value(now)
        self.adapt = connection.ops.adapt_datetimefield_value
        self.json = json_param

    def start(self, task: ClaimedTask) -> Statement:
        """Count the attempt and stamp the start; or, if a cancel came meanwhile, end it cancelled.

        A corrupt error history replaced at claim time is written back here, once."""
        repair, repaired = "", []
        if task.errors_replaced:
            repair, repaired = f"errors = {self.json}, ", [storable(task.errors)[0]]
        return (
            f"UPDATE {TABLE} SET {repair}"
            f"attempts = attempts + CASE WHEN cancel_requested THEN 0 ELSE 1 END, "
            f"started_at = CASE WHEN cancel_requested THEN started_at ELSE %s END, "
            f"finished_at = CASE WHEN cancel_requested THEN %s END, "
            f"status = CASE WHEN cancel_requested THEN '{Status.CANCELLED}' ELSE status END "
            f"WHERE {FENCE} RETURNING cancel_requested, attempts",
            [*repaired, self.stamp, self.stamp, task.id, task.claims],
        )

    def started(self, task: ClaimedTask, row: Any) -> Start:
        if row is None:
            logger.warning(
                "task id=%s claim=%s is no longer held by this worker: not started",
                task.id,
                task.claims,
            )
            return Start.GONE
        if row[0]:
            return Start.CANCELLED
        task.attempts = int(row[1])
        task.raw_started_at = self.now
        return Start.RUN

    def outcome(self, outcome: Outcome, retention: float) -> Statement:
        task = outcome.task
        fence = [task.id, task.claims]
        if isinstance(outcome, Succeeded):
            if retention == 0:
                return f"DELETE FROM {TABLE} WHERE {FENCE}", fence
            if outcome.return_value is None:
                return (
                    f"UPDATE {TABLE} SET status = '{Status.SUCCEEDED}', finished_at = %s, "
                    f"worker = %s WHERE {FENCE}",
                    [self.stamp, self.worker_name, *fence],
                )
            value, replaced = storable(outcome.return_value)
            note = task.note + (REPLACED_NOTE if replaced else "")
            return (
                f"UPDATE {TABLE} SET status = '{Status.SUCCEEDED}', finished_at = %s, worker = %s, "
                f"return_value = {self.json}, note = %s WHERE {FENCE}",
                [self.stamp, self.worker_name, value, note, *fence],
            )
        if isinstance(outcome, RetryLater):
            errors: list[Any] = task.errors
            if outcome.error is not None:
                errors = [*errors, outcome.error.entry(task.attempts, self.worker_name, self.now)]
            run_at = "run_at" if outcome.keep_place else "%s"
            return (
                f"UPDATE {TABLE} SET status = {REQUEUE_STATUS}, "
                f"finished_at = {REQUEUE_FINISHED_AT}, run_at = {run_at}, "
                "attempts = attempts - %s, claimed_by_id = NULL, worker = %s, "
                f"errors = {self.json} WHERE {FENCE}",
                [
                    self.stamp,
                    *([] if outcome.keep_place else [self.adapt(outcome.run_at or self.now)]),
                    0 if outcome.count_attempt else 1,
                    self.worker_name,
                    storable(errors)[0],
                    *fence,
                ],
            )
        if isinstance(outcome, Failed):
            failed: list[Any] = [
                *task.errors,
                outcome.error.entry(task.attempts, self.worker_name, self.now),
            ]
            return (
                f"UPDATE {TABLE} SET status = '{Status.FAILED}', finished_at = %s, worker = %s, "
                f"errors = {self.json} WHERE {FENCE}",
                [self.stamp, self.worker_name, storable(failed)[0], *fence],
            )
        return (
            f"UPDATE {TABLE} SET status = '{Status.CANCELLED}', finished_at = %s, worker = %s "
            f"WHERE {FENCE}",
            [self.stamp, self.worker_name, *fence],
        )


REPLACED_NOTE = " [return value: NUL characters or lone surrogates replaced with U+FFFD]"
