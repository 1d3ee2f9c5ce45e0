"""Putting tasks in: one at a time or in bulk, inside the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, router, transaction
from django.utils import timezone

from taskqueue.exceptions import DupeKeyExc
from taskqueue.models import Task


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

    def to_model(self, now: datetime) -> Task:
        return Task(
            kind=self.kind,
            task_path=self.task_path,
            payload=self.payload,
            queue_name=self.queue_name,
            priority=self.priority,
            run_at=self.run_at or now,
            enqueued_at=now,
            note=self.note or "",
            dupe_key=self.dupe_key,
            max_attempts=self.max_attempts,
            retry_abandoned=self.retry_abandoned,
        )


def database_for_write() -> str:
    return router.db_for_write(Task)


def enqueue(spec: TaskSpec) -> Task:
    """Store one task. It commits with the caller's transaction, if there is one."""
    task = spec.to_model(timezone.now())
    using = database_for_write()
    if spec.dupe_key is None:
        task.save(force_insert=True, using=using)
        return task
    try:
        # A savepoint, so a duplicate leaves the caller's transaction usable.
        with transaction.atomic(using=using):
            task.save(force_insert=True, using=using)
    except IntegrityError as error:
        raise DupeKeyExc(
            f"Queue {spec.queue_name!r} already has an unfinished task with dupe key {spec.dupe_key!r}."
        ) from error
    return task


def enqueue_many(specs: list[TaskSpec], batch_size: int = 1000) -> list[Task]:
    """Store many tasks with multi-row inserts; all or none (a duplicate dupe key fails the lot)."""
    now = timezone.now()
    tasks = [spec.to_model(now) for spec in specs]
    using = database_for_write()
    try:
        with transaction.atomic(using=using):
            return Task.objects.using(using).bulk_create(tasks, batch_size=batch_size)
    except IntegrityError as error:
        raise DupeKeyExc(f"A task in the batch has a dupe key already in use: {error}") from error
