"""Fixtures for the engine: a synchronous drain for in-process tests, and real worker processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from taskqueue.engine import liveness
from taskqueue.engine.claim import Claimer
from taskqueue.engine.outcomes import Recorder
from taskqueue.engine.running import TaskControl, run_task
from taskqueue.models import Task
from tests.conftest import INHERITED, PRODUCTION_SECRET, PROJECT


def database_url() -> str:
    """A URL for the test database, for child processes to share it."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
    return f"postgres://{settings['USER']}{password}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"


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


def recorded(path: Path) -> list[str]:
    return path.read_text().splitlines()


class WorkerProcesses:
    """Starts `manage.py taskqueue_worker` processes on the test database; ends those still running."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log_path = self.log_dir / f"worker-{len(self.started)}.log"
        with open(log_path, "wb") as log:  # the child writes through its own copy of the descriptor
            process = subprocess.Popen(
                [sys.executable, "manage.py", "taskqueue_worker", *args],
                cwd=PROJECT,
                env=self.env | env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: children of a supervisor end with it
            )
        process.log_path = log_path  # type: ignore[attr-defined]
        self.started.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(Path(p.log_path).read_text(errors="replace") for p in self.started)  # type: ignore[attr-defined]

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            # Whatever is left of the group this test started (a supervisor's children) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def workers(transactional_db, tmp_path: Path, record_file: Path) -> Iterator[WorkerProcesses]:
    env = {key: value for key, value in os.environ.items() if key in INHERITED or key.startswith("TEST_PG_")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "ENV_FILE": "",
        "SECRET_KEY": PRODUCTION_SECRET,
        "DATABASE_URL": database_url(),
        "LOG_LEVEL": "INFO",
        "TEST_RECORD_FILE": str(record_file),
        "PYTHONUNBUFFERED": "1",
    }
    processes = WorkerProcesses(env, tmp_path)
    yield processes
    processes.stop_all()
    # Shown by pytest when the test failed.
    print(processes.logs())


def wait_until(condition: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"Timed out after {timeout}s waiting until {message}")


def status_counts() -> dict[str, int]:
    from django.db.models import Count

    return {row["status"]: row["n"] for row in Task.objects.values("status").annotate(n=Count("id"))}
