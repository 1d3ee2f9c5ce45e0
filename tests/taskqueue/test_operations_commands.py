"""taskqueue_health for container health checks, taskqueue_prune for clean-ups."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from taskqueue import QueueInfo
from taskqueue.engine import liveness
from taskqueue.models import Status, Task, WorkerProcess
from tests.conftest import wait_until
from tests.taskqueue import sample_queues as q

pytestmark = pytest.mark.django_db


def health(*args: str) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("taskqueue_health", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code), err.getvalue().strip()
    return 0, out.getvalue().strip()


def test_unhealthy_without_a_live_worker() -> None:
    assert health() == (1, "unhealthy: no worker heartbeat in the last 60s")
    process = liveness.register("default", "stale", ["*"], 1)
    WorkerProcess.objects.filter(pk=process.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    assert health("--max-age", "120")[0] == 1


def test_healthy_with_a_fresh_heartbeat() -> None:
    liveness.register("default", "fresh", ["*"], 1)
    code, message = health()
    assert code == 0 and message.startswith("healthy: 1 worker process(es) alive")


def test_unhealthy_when_a_queue_falls_behind_unless_it_is_paused() -> None:
    liveness.register("default", "fresh", ["*"], 1)
    info = q.NoOpQueue.add_task(None)
    Task.objects.filter(pk=info.id).update(run_at=timezone.now() - timedelta(minutes=10))
    code, message = health("--max-latency", "120")
    assert code == 1 and message.startswith("unhealthy: queue 'noop' latency 600s is over 120s")
    assert health("--max-latency", "900")[0] == 0
    QueueInfo("noop").pause()
    assert health("--max-latency", "120")[0] == 0


def test_health_refuses_nonsense_limits() -> None:
    with pytest.raises(CommandError):
        call_command("taskqueue_health", "--max-age", "0")


@pytest.mark.slow
def test_health_as_a_container_would_run_it(workers) -> None:
    import subprocess
    import sys

    from tests.conftest import PROJECT

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "taskqueue_health", "--max-age", "10"],
            cwd=PROJECT,
            env=workers.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    down = run()
    assert (
        down.returncode == 1
        and down.stderr.strip() == "unhealthy: no worker heartbeat in the last 10s"
    )
    workers.start("--queues", "*")
    wait_until(lambda: WorkerProcess.objects.exists(), timeout=20, message="the worker registered")
    up = run()
    assert up.returncode == 0, up.stderr


def finished(queue=q.NoOpQueue, status=Status.SUCCEEDED, age=timedelta(days=2), path=None) -> int:
    info = queue.add_task(None)
    changes = {"status": status, "finished_at": timezone.now() - age}
    if path:
        changes["task_path"] = path
    Task.objects.filter(pk=info.id).update(**changes)
    return info.id


def prune(*args: str) -> str:
    out = StringIO()
    call_command("taskqueue_prune", *args, stdout=out)
    return out.getvalue().strip()


def test_prune_deletes_old_successes_only_by_default() -> None:
    old = finished()
    recent = finished(age=timedelta(hours=1))
    failed = finished(status=Status.FAILED)
    waiting = q.NoOpQueue.add_task(None).id
    assert prune() == "Deleted 1 task(s)."
    assert set(Task.objects.values_list("pk", flat=True)) == {recent, failed, waiting}
    assert old not in Task.objects.values_list("pk", flat=True)


def test_prune_filters_by_queue_path_status_and_age_and_dry_run_deletes_nothing() -> None:
    failed_noop = finished(status=Status.FAILED)
    failed_other = finished(q.RecordingQueue, status=Status.FAILED)
    cancelled = finished(status=Status.CANCELLED, path="some.old.Task")
    assert (
        prune("--status", "failed", "--status", "cancelled", "--dry-run")
        == "Would delete 3 task(s)."
    )
    assert Task.objects.count() == 3
    assert prune("--status", "failed", "--queue", "noop") == "Deleted 1 task(s)."
    assert (
        prune("--status", "cancelled", "--task-path", "some.old.Task", "--older-than", "3600")
        == "Deleted 1 task(s)."
    )
    assert list(Task.objects.values_list("pk", flat=True)) == [failed_other]
    assert failed_noop != cancelled


def test_prune_never_touches_waiting_or_running_tasks() -> None:
    with pytest.raises(CommandError):
        call_command("taskqueue_prune", "--status", "ready")
    with pytest.raises(CommandError):
        call_command("taskqueue_prune", "--older-than", "-5")
