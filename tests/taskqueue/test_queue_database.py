"""The queue's tables on a database of their own (QUEUE_DATABASE_URL), served by a real worker."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import PROJECT, manage

pytestmark = pytest.mark.slow

ENQUEUE = """
from django.db import transaction
from taskqueue.backend import enqueue_on_commit
from tests.taskqueue import sample_tasks as t
from tests.taskqueue.sample_queues import RecordingQueue
RecordingQueue.add_task("queue class")
with transaction.atomic():
    enqueue_on_commit(t.echo, "after commit")
"""


def tables(path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_tasks_live_on_the_queue_database_and_a_worker_runs_them(production_env, tmp_path) -> None:
    record = tmp_path / "record.txt"
    env = production_env | {
        "QUEUE_DATABASE_URL": f"sqlite:///{tmp_path / 'queue.sqlite3'}",
        "TEST_RECORD_FILE": str(record),
    }
    assert manage("migrate", "-v0", env=env).returncode == 0
    migrated = manage("migrate", "taskqueue", "--database", "queue", "-v0", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "taskqueue_task" in tables(tmp_path / "queue.sqlite3")
    assert "taskqueue_task" not in tables(tmp_path / "site.sqlite3")

    enqueued = manage("shell", "-c", ENQUEUE, env=env)
    assert enqueued.returncode == 0, enqueued.stderr
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "taskqueue_worker", "--interval", "0.2"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline
            and len(record.read_text().splitlines() if record.exists() else []) < 2
        ):
            time.sleep(0.1)
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0
    lines = record.read_text().splitlines()
    assert any(line.endswith("queue class") for line in lines)
    assert "echo ['after commit'] {}" in lines
