"""Fixtures for the engine: a synchronous drain for in-process tests, and real worker processes."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection
from django.utils import timezone

from taskqueue.engine import liveness
from taskqueue.engine.claim import Claimer
from taskqueue.engine.outcomes import Recorder
from taskqueue.engine.running import TaskControl, run_task
from taskqueue.models import Task


@pytest.fixture(autouse=True)
def tasks_really_enqueued(settings) -> None:
    """These tests are about the queue itself: Celery-style tasks are enqueued, not run eagerly."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_TASK_EAGER_PROPAGATES = False


@pytest.fixture
def drain(db) -> Callable[..., int]:
    """Claim and run ready tasks in this thread, as a worker would, until none is left. Returns tasks run."""

    def run(*selectors: str, batch: int = 10, retention: float = 3600) -> int:
        process = liveness.register(connection.alias, "test-drain", list(selectors) or ["*"], 1)
        claimer = Claimer(connection.alias, process.pk, list(selectors) or ["*"])
        recorder = Recorder(connection.alias, process.pk, "test-drain", retention)
        control = TaskControl(threading.Event(), "test-drain")
        ran = 0
        while tasks := claimer.claim(batch, timezone.now()):
            for task in tasks:
                recorder.add(run_task(task, control))
                ran += 1
            recorder.flush()
        liveness.deregister(connection.alias, process.pk)
        return ran

    return run


def status_counts() -> dict[str, int]:
    from django.db.models import Count

    return {row["status"]: row["n"] for row in Task.objects.values("status").annotate(n=Count("id"))}
