"""What operators do to tasks (from the admin, the dashboard or code): retry and cancel."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import router
from django.utils import timezone

from taskqueue.models import Status, Task

RETRYABLE = (Status.FAILED, Status.CANCELLED, Status.SUCCEEDED)


@dataclass(frozen=True)
class Result:
    done: int
    refused: int


def retry(task_ids: Iterable[int]) -> Result:
    """Make finished tasks ready to run now, with a fresh set of attempts. Running or waiting ones are refused.

    Their errors stay, for the record; on PostgreSQL the update wakes an idle worker at once.
    """
    ids = list(task_ids)
    using = router.db_for_write(Task)
    done = (
        Task.objects.using(using)
        .filter(pk__in=ids, status__in=RETRYABLE)
        .update(
            status=Status.READY,
            run_at=timezone.now(),
            attempts=0,
            claimed_by=None,
            finished_at=None,
            started_at=None,
            return_value=None,
            cancel_requested=False,
        )
    )
    return Result(done=done, refused=len(ids) - done)


def cancel(task_ids: Iterable[int]) -> Result:
    """Cancel tasks: waiting ones will never run; running ones are asked to stop (their worker sets
    `stop_requested()` within a heartbeat). Finished ones are refused."""
    ids = list(task_ids)
    using = router.db_for_write(Task)
    tasks = Task.objects.using(using).filter(pk__in=ids)
    cancelled = tasks.filter(status=Status.READY).update(status=Status.CANCELLED, finished_at=timezone.now())
    stopping = tasks.filter(status=Status.RUNNING).update(cancel_requested=True)
    return Result(done=cancelled + stopping, refused=len(ids) - cancelled - stopping)
