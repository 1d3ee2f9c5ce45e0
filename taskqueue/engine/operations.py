"""What operators do to tasks (from the admin, the dashboard or code): retry and cancel."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Case, Value, When
from django.utils import timezone

from taskqueue import signals
from taskqueue.engine import concurrency
from taskqueue.models import UNFINISHED, Status, Task

# Ids per cancelling statement: well under SQLite's limit of 32,766 parameters.
CANCEL_CHUNK = 1000
RETRYABLE = (Status.FAILED, Status.CANCELLED, Status.SUCCEEDED)
# Why retry refused a finished task: an unfinished task of its queue has its dupe key now.
DUPE_KEY_IN_USE = "dupe key in use"


@dataclass(frozen=True)
class Result:
    done: int
    refused: int
    #: Refused tasks whose reason is worth telling apart, with that reason by id (retry:
    #: DUPE_KEY_IN_USE). The other refused ones were not in a state the operation applies to, or are
    #: gone.
    refusals: dict[int, str] = field(default_factory=dict)


def retry(task_ids: Iterable[int]) -> Result:
    """Make finished tasks ready to run now, with a fresh set of attempts. Running or waiting ones
    are refused.

    Their errors stay, for the record; on PostgreSQL the update wakes an idle worker at once. A task
    under a concurrency limit waits for a slot like a new one. A task whose dupe key an unfinished
    task of its queue holds now is refused (two unfinished tasks cannot share a key), and the others
    are retried; of several selected tasks sharing a key, only the newest. Nothing here aborts a
    surrounding transaction.
    """
    ids = list(task_ids)
    using = router.db_for_write(Task)
    now = timezone.now()
    rows = list(
        Task.objects.using(using)
        .filter(pk__in=ids, status__in=RETRYABLE)
        .values_list("pk", "queue_name", "dupe_key", "concurrency_key")
    )
    refusals = dict.fromkeys(_dupe_keys_taken(using, rows), DUPE_KEY_IN_USE)
    retried = [pk for pk, *_ in rows if pk not in refusals]
    done, conflicts = _make_ready(using, retried, now)
    refusals |= dict.fromkeys(conflicts, DUPE_KEY_IN_USE)
    for key in sorted({key for pk, _, _, key in rows if key is not None and pk not in refusals}):
        concurrency.promote(using, key, now)
    return Result(done=done, refused=len(ids) - done, refusals=refusals)


def _dupe_keys_taken(using: str, rows: list[tuple[int, str, str | None, str | None]]) -> list[int]:
    """The finished tasks among `rows` that cannot be made unfinished: their (queue, dupe key) is
    held by an unfinished task, or by a newer task of the same selection."""
    keyed = sorted((row for row in rows if row[2] is not None), reverse=True)  # newest first
    if not keyed:
        return []
    taken = set(
        Task.objects.using(using)
        .filter(status__in=UNFINISHED, dupe_key__in={key for _, _, key, _ in keyed})
        .values_list("queue_name", "dupe_key")
    )
    refused = []
    for pk, queue_name, dupe_key, _ in keyed:
        if (queue_name, dupe_key) in taken:
            refused.append(pk)
        taken.add((queue_name, dupe_key))
    return refused


def _make_ready(using: str, ids: list[int], now: datetime) -> tuple[int, list[int]]:
    """Update the tasks to ready (or blocked, under a concurrency limit): all in one statement, or,
    when a dupe key was taken since it was checked, one by one. Each try is a savepoint, so a
    refused one leaves the caller's transaction usable (PostgreSQL would abort it). Returns how many
    and the ids refused."""
    try:
        with transaction.atomic(using=using):
            return _ready(using, ids, now), []
    except IntegrityError:
        done, conflicts = 0, []
        for pk in ids:
            try:
                with transaction.atomic(using=using):
                    done += _ready(using, [pk], now)
            except IntegrityError:
                conflicts.append(pk)
        return done, conflicts


def _ready(using: str, ids: list[int], now: datetime) -> int:
    return (
        Task.objects.using(using)
        .filter(pk__in=ids, status__in=RETRYABLE)
        .update(
            status=Case(
                When(concurrency_key=None, then=Value(Status.READY)), default=Value(Status.BLOCKED)
            ),
            run_at=now,
            attempts=0,
            claimed_by=None,
            finished_at=None,
            started_at=None,
            return_value=None,
            cancel_requested=False,
        )
    )


def cancel(task_ids: Iterable[int]) -> Result:
    """Cancel tasks: waiting ones will never run; running ones are asked to stop (their worker sets
    `stop_requested()` within a heartbeat). Finished ones are refused."""
    ids = list(task_ids)
    using = router.db_for_write(Task)
    tasks = Task.objects.using(using).filter(pk__in=ids)
    now = timezone.now()
    keys = concurrency.keys_of(tasks)
    cancelled = cancel_waiting(using, ids, now)
    stopping = tasks.filter(status=Status.RUNNING).update(cancel_requested=True)
    for key in keys:
        concurrency.promote(using, key, now)
    if cancelled and signals.listened():
        state = Status.CANCELLED.value
        endings = [
            (task_id, kind, path, state, signals.CANCELLED) for task_id, kind, path in cancelled
        ]
        transaction.on_commit(lambda: signals.send_ended(endings), using=using)
    return Result(done=len(cancelled) + stopping, refused=len(ids) - len(cancelled) - stopping)


def cancel_waiting(using: str, ids: list[int], now: datetime) -> list[tuple[int, str, str]]:
    """Cancel the waiting ones of `ids`; returns (id, kind, task_path) of each, as the update saw
    them."""
    if not ids:
        return []
    table, waiting = Task._meta.db_table, (Status.READY, Status.BLOCKED)
    connection = connections[using]
    cancelled: list[tuple[int, str, str]] = []
    with connection.cursor() as cursor:
        for start in range(0, len(ids), CANCEL_CHUNK):
            chunk = ids[start : start + CANCEL_CHUNK]
            cursor.execute(
                f"UPDATE {table} SET status = %s, finished_at = %s "
                f"WHERE id IN ({', '.join(['%s'] * len(chunk))}) "
                f"AND status IN (%s, %s) RETURNING id, kind, task_path",
                [Status.CANCELLED, connection.ops.adapt_datetimefield_value(now), *chunk, *waiting],
            )
            cancelled.extend(cursor.fetchall())
    return cancelled
