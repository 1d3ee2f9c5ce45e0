"""What became of an attempt, and writing that down in batches.

Every write is guarded by `status = running AND claimed_by = this worker`: if the task was taken
away meanwhile (its worker presumed dead), a late outcome changes nothing.
"""

from __future__ import annotations

import json
import logging
import traceback as traceback_module
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from taskqueue.engine import concurrency
from taskqueue.engine.claim import ClaimedTask
from taskqueue.engine.dialect import TABLE, Dialect
from taskqueue.models import Status

logger = logging.getLogger("taskqueue.worker")


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    exc_class: str
    message: str
    traceback: str

    @classmethod
    def from_exception(cls, error: BaseException) -> ErrorInfo:
        kind = type(error)
        return cls(
            exc_class=f"{kind.__module__}.{kind.__qualname__}",
            message=str(error),
            traceback="".join(traceback_module.format_exception(error)),
        )

    def entry(self, attempt: int, worker: str, at: datetime, *, abandoned: bool = False) -> dict[str, Any]:
        return {
            "attempt": attempt,
            "at": at.isoformat(),
            "worker": worker,
            "exc_class": self.exc_class,
            "message": self.message,
            "traceback": self.traceback,
            "abandoned": abandoned,
        }


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


def put_back(task: ClaimedTask) -> RetryLater:
    """An attempt that never really ran (shutdown): ready again at once, not counted."""
    return RetryLater(task, run_at=None, count_attempt=False)


@dataclass
class Recorder:
    """Buffers outcomes of one worker and writes them in as few statements as their shapes allow."""

    using: str
    worker_id: int
    worker_name: str
    retention: float
    pending: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.pending.append(outcome)

    def flush(self) -> None:
        """Write every pending outcome in one transaction, then run their after-write hooks.

        On a database error the outcomes stay pending, to be written by the next call.
        """
        if not self.pending:
            return
        connection = connections[self.using]
        writer = _Writer(connection, self.worker_id, self.worker_name, timezone.now())
        plain = [o.task.id for o in self.pending if isinstance(o, Succeeded) and o.return_value is None]
        with transaction.atomic(using=self.using), connection.cursor() as cursor:
            if plain and self.retention == 0:
                writer.delete(cursor, plain)
            elif plain:
                writer.succeeded(cursor, plain)
            writer.succeeded_with_values(
                cursor, [o for o in self.pending if isinstance(o, Succeeded) and o.return_value is not None]
            )
            for outcome in self.pending:
                if not isinstance(outcome, Succeeded):
                    writer.one(cursor, outcome)
            # Slots freed by finished tasks go to blocked tasks of their keys, in the same transaction.
            for key in {o.task.concurrency_key for o in self.pending if o.task.concurrency_key and _final(o)}:
                concurrency.promote(self.using, key, writer.now)
        written, self.pending = self.pending, []
        for outcome in written:
            if outcome.after_write is not None:
                try:
                    outcome.after_write(writer.now)
                except Exception:
                    logger.exception("after-write hook of task %s failed", outcome.task.id)


def _final(outcome: Outcome) -> bool:
    return not isinstance(outcome, RetryLater)


class _Writer:
    """The statements of one flush. Every one is guarded: only tasks still running for this worker change."""

    def __init__(self, connection: Any, worker_id: int, worker_name: str, now: datetime) -> None:
        self.worker_id = worker_id
        self.worker_name = worker_name
        self.now = now
        self.stamp = connection.ops.adapt_datetimefield_value(now)
        self.adapt = connection.ops.adapt_datetimefield_value
        self.json = Dialect(connection.vendor).json_param
        self.guard = f"status = '{Status.RUNNING}' AND claimed_by_id = %s"

    def delete(self, cursor: Any, ids: list[int]) -> None:
        marks = ", ".join(["%s"] * len(ids))
        cursor.execute(f"DELETE FROM {TABLE} WHERE id IN ({marks}) AND {self.guard}", [*ids, self.worker_id])

    def succeeded(self, cursor: Any, ids: list[int]) -> None:
        marks = ", ".join(["%s"] * len(ids))
        cursor.execute(
            f"UPDATE {TABLE} SET status = '{Status.SUCCEEDED}', finished_at = %s, worker = %s "
            f"WHERE id IN ({marks}) AND {self.guard}",
            [self.stamp, self.worker_name, *ids, self.worker_id],
        )

    def succeeded_with_values(self, cursor: Any, outcomes: list[Succeeded]) -> None:
        if outcomes:
            cursor.executemany(
                f"UPDATE {TABLE} SET status = '{Status.SUCCEEDED}', finished_at = %s, worker = %s, "
                f"return_value = {self.json} WHERE id = %s AND {self.guard}",
                [
                    [self.stamp, self.worker_name, json.dumps(o.return_value), o.task.id, self.worker_id]
                    for o in outcomes
                ],
            )

    def one(self, cursor: Any, outcome: Outcome) -> None:
        task = outcome.task
        if isinstance(outcome, RetryLater):
            errors = task.errors
            if outcome.error is not None:
                errors = [*errors, outcome.error.entry(task.attempts, self.worker_name, self.now)]
            # A cancel that came while it ran, too late for its worker to pass on (say, at shutdown), wins.
            cursor.execute(
                f"UPDATE {TABLE} SET status = CASE WHEN cancel_requested THEN '{Status.CANCELLED}' "
                f"ELSE '{Status.READY}' END, finished_at = CASE WHEN cancel_requested THEN %s END, "
                f"run_at = %s, attempts = attempts - %s, "
                f"claimed_by_id = NULL, worker = %s, errors = {self.json} WHERE id = %s AND {self.guard}",
                [
                    self.stamp,
                    self.adapt(outcome.run_at or self.now),
                    0 if outcome.count_attempt else 1,
                    self.worker_name,
                    json.dumps(errors),
                    task.id,
                    self.worker_id,
                ],
            )
        elif isinstance(outcome, Failed):
            errors = [*task.errors, outcome.error.entry(task.attempts, self.worker_name, self.now)]
            cursor.execute(
                f"UPDATE {TABLE} SET status = '{Status.FAILED}', finished_at = %s, worker = %s, "
                f"errors = {self.json} WHERE id = %s AND {self.guard}",
                [self.stamp, self.worker_name, json.dumps(errors), task.id, self.worker_id],
            )
        elif isinstance(outcome, Cancelled):
            cursor.execute(
                f"UPDATE {TABLE} SET status = '{Status.CANCELLED}', finished_at = %s, worker = %s "
                f"WHERE id = %s AND {self.guard}",
                [self.stamp, self.worker_name, task.id, self.worker_id],
            )
