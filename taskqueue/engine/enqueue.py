"""Putting tasks in: one at a time or in bulk, inside the caller's transaction.

One multi-row `INSERT … RETURNING id` serves both: the ORM's per-object machinery costs more than
the database does at these rates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from taskqueue import signals
from taskqueue.engine import concurrency, databases
from taskqueue.engine.concurrency import Concurrency
from taskqueue.exceptions import DupeKeyExc
from taskqueue.models import Status, Task
from taskqueue.serialization import ErrorInfo

# Rows per INSERT statement: well under SQLite's limit of 32,766 parameters.
ROWS_PER_STATEMENT = 2000


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What a front door asks the engine to store. The payload is already checked JSON."""

    kind: str
    task_path: str
    payload: dict[str, Any]
    queue_name: str = "default"
    priority: int = 0
    run_at: datetime | None = None
    note: str = ""
    dupe_key: str | None = None
    max_attempts: int = 3
    retry_abandoned: bool = True
    concurrency: Concurrency | None = None
    # When it is stored as enqueued (default: the insert's time), for a front door that reports it.
    enqueued_at: datetime | None = None


def database_for_write() -> str:
    return router.db_for_write(Task)


def enqueue(spec: TaskSpec) -> int:
    """Store one task and return its id. It commits with the caller's transaction, if there is
    one."""
    using = database_for_write()
    if spec.dupe_key is None and spec.concurrency is None:
        return _insert(using, [spec])[0]
    try:
        # A savepoint: a duplicate leaves the caller's transaction usable; a concurrency check and
        # the insert it decides commit together.
        with transaction.atomic(using=using):
            return _insert(using, [spec])[0]
    except IntegrityError as error:
        if spec.dupe_key is None:
            raise
        raise DupeKeyExc(
            f"Queue {spec.queue_name!r} already has an unfinished task "
            f"with dupe key {spec.dupe_key!r}."
        ) from error


def enqueue_many(specs: list[TaskSpec]) -> list[int]:
    """Store many tasks with multi-row inserts and return their ids; all or none."""
    using = database_for_write()
    ids: list[int] = []
    try:
        with transaction.atomic(using=using):
            if any(spec.concurrency for spec in specs):
                # Each admission must see the tasks admitted before it.
                for spec in specs:
                    ids.extend(_insert(using, [spec]))
            else:
                for start in range(0, len(specs), ROWS_PER_STATEMENT):
                    ids.extend(_insert(using, specs[start : start + ROWS_PER_STATEMENT]))
    except IntegrityError as error:
        raise DupeKeyExc(f"A task in the batch has a dupe key already in use: {error}") from error
    return ids


def _insert(using: str, specs: list[TaskSpec]) -> list[int]:
    connection = connections[using]
    adapt = connection.ops.adapt_datetimefield_value
    moment = timezone.now()
    now = adapt(moment)
    rows = [_row(using, spec, moment, now, adapt) for spec in specs]
    ids = databases.for_connection(connection).insert(connection, rows)
    discarded = [
        (task_id, spec.kind, spec.task_path, Status.CANCELLED.value, signals.DISCARDED)
        for task_id, spec, row in zip(ids, specs, rows, strict=True)
        if row[STATUS_COLUMN] == Status.CANCELLED
    ]
    if discarded and signals.listened():
        transaction.on_commit(lambda: signals.send_ended(discarded), using=using)
    return ids


# Where a row's status is, in the rows `_row` builds (INSERT_COLUMNS order).
STATUS_COLUMN = 6


def _row(using: str, spec: TaskSpec, moment: datetime, now: Any, adapt: Any) -> tuple[Any, ...]:
    status, finished_at, errors = Status.READY.value, None, "[]"
    limit = spec.concurrency
    if limit is not None:
        status = concurrency.admit(using, limit, moment)
        if status == Status.CANCELLED:
            finished_at = now
            reason = ErrorInfo("taskqueue.ConcurrencyLimit", concurrency.discarded_note(limit), "")
            errors = json.dumps([reason.entry(0, "", moment)])
    enqueued_at = now if spec.enqueued_at is None else adapt(spec.enqueued_at)
    return (
        spec.kind,
        spec.task_path,
        spec.queue_name,
        json.dumps(spec.payload),
        spec.note,
        spec.priority,
        status,
        spec.dupe_key,
        enqueued_at,
        enqueued_at if spec.run_at is None else adapt(spec.run_at),
        spec.max_attempts,
        spec.retry_abandoned,
        limit and limit.key,
        limit and limit.limit,
        limit and limit.duration,
        finished_at,
        errors,
    )
