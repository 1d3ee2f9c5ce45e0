"""What became of an attempt, and writing that down in batches.

Every write is guarded by `status = running AND claimed_by = this worker`: if the task was taken
away meanwhile (its worker presumed dead), a late outcome changes nothing.
"""

from __future__ import annotations

import json
import traceback as traceback_module
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from taskqueue.engine.claim import ClaimedTask
from taskqueue.engine.dialect import TABLE, Dialect
from taskqueue.models import Status


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


@dataclass(frozen=True, slots=True)
class Succeeded:
    task: ClaimedTask
    return_value: Any = None


@dataclass(frozen=True, slots=True)
class RetryLater:
    task: ClaimedTask
    run_at: datetime | None = None  # None: as soon as possible
    count_attempt: bool = True
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    task: ClaimedTask
    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class Cancelled:
    task: ClaimedTask


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
        """Write every pending outcome in one transaction; on a database error they stay pending."""
        if not self.pending:
            return
        now = timezone.now()
        connection = connections[self.using]
        dialect = Dialect(connection.vendor)
        stamp = connection.ops.adapt_datetimefield_value(now)
        guard = f"status = '{Status.RUNNING}' AND claimed_by_id = %s"
        plain_successes = [o.task.id for o in self.pending if isinstance(o, Succeeded) and o.return_value is None]
        valued_successes = [o for o in self.pending if isinstance(o, Succeeded) and o.return_value is not None]
        with transaction.atomic(using=self.using), connection.cursor() as cursor:
            if plain_successes:
                marks = ", ".join(["%s"] * len(plain_successes))
                if self.retention == 0:
                    cursor.execute(
                        f"DELETE FROM {TABLE} WHERE id IN ({marks}) AND {guard}", [*plain_successes, self.worker_id]
                    )
                else:
                    cursor.execute(
                        f"UPDATE {TABLE} SET status = '{Status.SUCCEEDED}', finished_at = %s "
                        f"WHERE id IN ({marks}) AND {guard}",
                        [stamp, *plain_successes, self.worker_id],
                    )
            if valued_successes:
                cursor.executemany(
                    f"UPDATE {TABLE} SET status = '{Status.SUCCEEDED}', finished_at = %s, "
                    f"return_value = {dialect.json_param} WHERE id = %s AND {guard}",
                    [[stamp, json.dumps(o.return_value), o.task.id, self.worker_id] for o in valued_successes],
                )
            for outcome in self.pending:
                if not isinstance(outcome, Succeeded):
                    self._write_one(cursor, dialect, outcome, now, stamp, guard)
        self.pending.clear()

    def _write_one(self, cursor, dialect: Dialect, outcome: Outcome, now: datetime, stamp: Any, guard: str) -> None:
        task = outcome.task
        json_param = dialect.json_param
        if isinstance(outcome, RetryLater):
            errors = task.errors
            if outcome.error is not None:
                errors = [*errors, outcome.error.entry(task.attempts, self.worker_name, now)]
            run_at = cursor.db.ops.adapt_datetimefield_value(outcome.run_at or now)
            uncount = 0 if outcome.count_attempt else 1
            cursor.execute(
                f"UPDATE {TABLE} SET status = '{Status.READY}', run_at = %s, attempts = attempts - %s, "
                f"claimed_by_id = NULL, errors = {json_param} WHERE id = %s AND {guard}",
                [run_at, uncount, json.dumps(errors), task.id, self.worker_id],
            )
        elif isinstance(outcome, Failed):
            errors = [*task.errors, outcome.error.entry(task.attempts, self.worker_name, now)]
            cursor.execute(
                f"UPDATE {TABLE} SET status = '{Status.FAILED}', finished_at = %s, errors = {json_param} "
                f"WHERE id = %s AND {guard}",
                [stamp, json.dumps(errors), task.id, self.worker_id],
            )
        elif isinstance(outcome, Cancelled):
            cursor.execute(
                f"UPDATE {TABLE} SET status = '{Status.CANCELLED}', finished_at = %s WHERE id = %s AND {guard}",
                [stamp, task.id, self.worker_id],
            )
