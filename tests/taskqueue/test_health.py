"""taskqueue_health tells the truth about worker threads: a fresh heartbeat from a process whose
worker threads or scheduler died is not health. Run as a container's health check would run it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from taskqueue.engine import liveness
from taskqueue.models import WorkerProcess
from tests.conftest import PROJECT

pytestmark = pytest.mark.slow


@pytest.fixture
def health(workers) -> Callable[[], subprocess.CompletedProcess[str]]:
    """Run `manage.py taskqueue_health` on the test database (no worker started: the rows are the
    test's)."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "taskqueue_health"],
            cwd=PROJECT,
            env=workers.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def process(name: str, threads: int, **state: object) -> WorkerProcess:
    """A registered worker process row, with its heartbeat's record of what is alive changed to
    `state`."""
    row = liveness.register("default", name, ["*"], threads)
    WorkerProcess.objects.filter(pk=row.pk).update(**state)
    row.refresh_from_db()
    return row


def test_unhealthy_when_a_fresh_process_has_fewer_live_worker_threads_than_it_started(
    health,
) -> None:
    process("steady", 2, scheduler_alive=True)
    sick = process("sick", 4, threads_alive=3, scheduler_alive=True)

    result = health()
    assert result.returncode == 1
    assert (
        result.stderr.strip() == f"unhealthy: worker process {sick} has 3 of 4 worker threads alive"
    )


def test_unhealthy_when_a_fresh_process_has_a_dead_scheduler(health) -> None:
    sick = process("no-scheduler", 2, scheduler_alive=False)

    result = health()
    assert result.returncode == 1
    assert result.stderr.strip() == f"unhealthy: worker process {sick} has a dead scheduler"


def test_healthy_when_only_stale_processes_have_dead_threads(health) -> None:
    """A stale heartbeat is judged by age alone (recovery deals with it): it does not make a live
    one sick."""
    process(
        "gone",
        4,
        threads_alive=0,
        scheduler_alive=False,
        heartbeat_at=timezone.now() - timedelta(minutes=5),
    )
    process("working", 2, scheduler_alive=None)  # runs no scheduler
    process("scheduling", 0, scheduler_alive=True)  # --only-schedule: no worker threads

    result = health()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("healthy: 2 worker process(es) alive")
