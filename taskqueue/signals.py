"""`task_ended`: one signal for every way a task ends, whatever its front door.

    from django.dispatch import receiver
    from taskqueue.signals import task_ended

    @receiver(task_ended)
    def on_task_ended(sender, task_id, kind, task_path, state, outcome, **kwargs):
        ...

Sent once the ending is stored (committed), in the process that stored it: a worker for a task that
ran, and for one the recovery failed after its worker died; the process that cancelled a waiting
task; the one that enqueued a task its concurrency rule discarded. Arguments:

- `task_id`, `kind` (the front door: "queue", "django", "celery"), `task_path`;
- `state`: the task's final state, "succeeded", "failed" or "cancelled" (taskqueue.models.Status);
- `outcome`: how it came to it: "succeeded", "failed", "cancelled" (while waiting, or while running
  and it stopped), "discarded" (a concurrency rule with on_conflict="discard") or "abandoned" (its
  worker died and no attempt was left, or retry_abandoned is off).

A receiver that raises is logged and does not stop the others, nor the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.dispatch import Signal

from taskqueue.models import Task

logger = logging.getLogger("taskqueue.signals")

task_ended = Signal()

SUCCEEDED, FAILED, CANCELLED, DISCARDED, ABANDONED = (
    "succeeded",
    "failed",
    "cancelled",
    "discarded",
    "abandoned",
)


def listened() -> bool:
    """Whether anyone listens (checked before building the arguments: the worker's usual case is no
    one)."""
    return bool(task_ended.receivers) and task_ended.has_listeners(Task)


def send_ended(endings: Iterable[tuple[int, str, str, str, str]]) -> None:
    """Send task_ended for each (task_id, kind, task_path, state, outcome), logging what receivers
    raise."""
    for task_id, kind, task_path, state, outcome in endings:
        responses: list[tuple[Any, Any]] = task_ended.send_robust(
            Task, task_id=task_id, kind=kind, task_path=task_path, state=state, outcome=outcome
        )
        for receiver, response in responses:
            if isinstance(response, Exception):
                logger.error(
                    "task_ended receiver %r failed for task %s",
                    receiver,
                    task_id,
                    exc_info=response,
                )
