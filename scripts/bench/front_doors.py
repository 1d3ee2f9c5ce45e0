"""The task queue's three front doors, as the benchmark names them: each one's no-op task and
queue."""

from __future__ import annotations

from dataclasses import dataclass

from scripts.bench.common import CELERY_QUEUE, DJANGO_QUEUE, NOOP_QUEUE


@dataclass(frozen=True)
class FrontDoor:
    """A way into the engine, as the benchmark uses it: its no-op task and that task's queue."""

    kind: str  # what the engine stores as the kind of its tasks
    label: str
    single_call: str  # how one task is enqueued
    noop: str  # the no-op's name in scripts.bench.tasks
    queue: str


QUEUE_CLASS, DJANGO_TASK, CELERY_TASK = "queue", "django", "celery"
FRONT_DOORS = {
    door.kind: door
    for door in (
        FrontDoor(QUEUE_CLASS, "queue classes", "add_task", "BenchNoOp", NOOP_QUEUE),
        FrontDoor(DJANGO_TASK, "django.tasks", "task.enqueue()", "django_noop", DJANGO_QUEUE),
        FrontDoor(CELERY_TASK, "Celery-style", "shared_task.delay()", "celery_noop", CELERY_QUEUE),
    )
}
OTHER_FRONT_DOORS = (FRONT_DOORS[DJANGO_TASK], FRONT_DOORS[CELERY_TASK])
