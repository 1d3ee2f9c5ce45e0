"""The queue classes and tasks the benchmark's worker processes run: a task module.

Workers run only declared tasks, found through TASKQUEUE["TASK_MODULES"]: the benchmark lists this
module there (TASKQUEUE_TASK_MODULES, see `databases.Database.env`). The front doors need Django's
app registry (and `django.tasks` its TASKS setting), so this module is imported only once Django is
set up.
"""

from __future__ import annotations

import os
import time

from django.tasks import task

from scripts.bench.common import CELERY_QUEUE, DJANGO_QUEUE, NOOP_QUEUE, STAMP_FILE_ENV, STAMP_QUEUE
from taskqueue.celery import shared_task
from taskqueue.queues import BaseQueue, Retry, TaskInfo


class BenchNoOp(BaseQueue[None]):
    """Does nothing: what remains is the engine's cost per task."""

    queue_name = NOOP_QUEUE

    @classmethod
    def process(cls, task_info: TaskInfo[None]) -> Retry | None:
        return None


class BenchStamp(BaseQueue[None]):
    """Appends `<task id> <time.time()>` to the file named by BENCH_STAMP_FILE as it starts."""

    queue_name = STAMP_QUEUE

    @classmethod
    def process(cls, task_info: TaskInfo[None]) -> Retry | None:
        line = f"{task_info.id} {time.time()!r}\n".encode()
        fd = os.open(os.environ[STAMP_FILE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return None


@task(queue_name=DJANGO_QUEUE)
def django_noop() -> None:
    """Does nothing, as a django.tasks task."""


@shared_task(queue=CELERY_QUEUE)
def celery_noop() -> None:
    """Does nothing, as a Celery-style task."""
