"""Enqueueing the no-op tasks through each front door. Child side: imported once Django is set
up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.db import transaction

from scripts.bench import tasks as task_module
from scripts.bench.common import INSERT_SLICE
from scripts.bench.front_doors import CELERY_TASK, DJANGO_TASK, FRONT_DOORS, QUEUE_CLASS
from taskqueue.celery import KIND, SharedTask
from taskqueue.engine.enqueue import TaskSpec, enqueue_many


def noop(front: str) -> Any:
    """The front door's no-op (queue class, django.tasks task or shared_task), from the task
    module."""
    return getattr(task_module, FRONT_DOORS[front].noop)


def single_enqueuer(front: str) -> Callable[[], object]:
    """Enqueues one no-op task the front door's own way: `add_task(None)`, `enqueue()` or
    `delay()`."""
    task = noop(front)
    if front == DJANGO_TASK:
        return task.enqueue
    if front == CELERY_TASK:
        return task.delay
    return lambda: task.add_task(None)


def bulk_enqueue(front: str, count: int) -> None:
    """Enqueues `count` no-op tasks in one go: `add_tasks`, the backend's `enqueue_all`, or, as the
    Celery-style API has no bulk call, the engine's `enqueue_many` with what `delay()` stores."""
    task = noop(front)
    if front == DJANGO_TASK:
        task.get_backend().enqueue_all([(task, [], {})] * count)
    elif front == CELERY_TASK:
        enqueue_many([celery_spec(task)] * count)
    else:
        task.add_tasks([None] * count)


def celery_spec(task: SharedTask) -> TaskSpec:
    """The TaskSpec `task.delay()` stores for a call without arguments (see
    SharedTask.apply_async)."""
    return TaskSpec(
        kind=KIND,
        task_path=task.name,
        payload={"args": [], "kwargs": {}},
        queue_name=task.queue,
        priority=task.priority,
        max_attempts=task.policy.max_retries + 1,
    )


def enqueue_committed(tasks: int, front: str = QUEUE_CLASS) -> tuple[float, float]:
    """Bulk-insert no-op tasks in one transaction; the monotonic and wall-clock times of its
    commit."""
    commit: list[float] = []
    with transaction.atomic():
        for start in range(0, tasks, INSERT_SLICE):
            bulk_enqueue(front, min(INSERT_SLICE, tasks - start))
        transaction.on_commit(lambda: commit.extend((time.monotonic(), time.time())))
    return commit[0], commit[1]
