"""What operators do to tasks (from the admin, the dashboard or code): retry and cancel."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import router
from django.db.models import Case, Value, When
from django.utils import timezone

from taskqueue.engine import concurrency
from taskqueue.models import Status, Task

RETRYABLE = (Status.FAILED, Status.CANCELLED, Status.SUCCEEDED)


@dataclass(frozen=True)
class Result:
    done: int
    refused: int


def retry(task_ids: Iterable[int]) -> Result:
    """Make finished tasks ready to run now, with a fresh set of attempts. Running or waiting ones are refused.

    Their errors stay, for the record; on PostgreSQL the update wakes an idle worker at once. A task
    under a concurrency limit waits for a slot like a new one.
    """
    ids = list(task_ids)
    using = router.db_for_write(Task)
    now = timezone.now()
    retryable = Task.objects.using(using).filter(pk__in=ids, status__in=RETRYABLE)
    keys = set(retryable.exclude(concurrency_key=None).values_list("concurrency_key", flat=True))
    done = retryable.update(
        status=Case(When(concurrency_key=None, then=Value(Status.READY)), default=Value(Status.BLOCKED)),
        run_at=now,
        attempts=0,
        claimed_by=None,
        finished_at=None,
        started_at=None,
        return_value=None,
        cancel_requested=False,
    )
    for key in keys:
        concurrency.promote(using, key, now)
    return Result(done=done, refused=len(ids) - done)


def cancel(task_ids: Iterable[int]) -> Result:
    """Cancel tasks: waiting ones will never run; running ones are asked to stop (their worker sets
    `stop_requested()` within a heartbeat). Finished ones are refused."""
    ids = list(task_ids)
    using = router.db_for_write(Task)
    tasks = Task.objects.using(using).filter(pk__in=ids)
    now = timezone.now()
    keys = set(tasks.exclude(concurrency_key=None).values_list("concurrency_key", flat=True))
    waiting = tasks.filter(status__in=[Status.READY, Status.BLOCKED])
    cancelled = waiting.update(status=Status.CANCELLED, finished_at=now)
    stopping = tasks.filter(status=Status.RUNNING).update(cancel_requested=True)
    for key in keys:
        concurrency.promote(using, key, now)
    return Result(done=cancelled + stopping, refused=len(ids) - cancelled - stopping)
