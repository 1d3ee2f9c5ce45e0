"""Claims and enqueues under real concurrency: racing processes, locked rows, a database restart."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from django.db import connection
from django.utils import timezone

from scripts.pgcluster import Cluster
from taskqueue.engine.claim import Claimer
from taskqueue.models import Status, Task
from tests.conftest import PROJECT, recorded, wait_until
from tests.taskqueue import sample_queues as q
from tests.taskqueue.conftest import status_counts

pytestmark = pytest.mark.slow
postgresql_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="a PostgreSQL behaviour"
)


def test_two_processes_racing_for_the_same_dupe_keys_never_both_win(workers, tmp_path) -> None:
    keys = 200
    start = tmp_path / "go"
    env = workers.env | {"RACE_START_FILE": str(start), "RACE_KEYS": str(keys)}
    command = [
        sys.executable,
        "manage.py",
        "shell",
        "-c",
        "from tests.taskqueue.race import main; main()",
    ]
    racers = [
        subprocess.Popen(
            command, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    time.sleep(1.5)  # both processes are set up and polling for the start signal
    start.touch()
    results = [racer.communicate(timeout=120) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), results
    wins = [int(out.strip().split()[-1]) for out, _ in results]
    assert sum(wins) == keys
    assert Task.objects.count() == keys
    assert max(Counter(Task.objects.values_list("dupe_key", flat=True)).values()) == 1


@postgresql_only
def test_a_locked_row_is_skipped_without_waiting(transactional_db) -> None:
    import psycopg

    first = q.NoOpQueue.add_task(None)
    second = q.NoOpQueue.add_task(None)
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as other:
        other.execute("SELECT id FROM taskqueue_task WHERE id = %s FOR UPDATE", [first.id])
        claimer = Claimer(connection.alias, 0, ["noop"])
        began = time.monotonic()
        claimed = claimer.claim(10, timezone.now())
        waited = time.monotonic() - began
        other.rollback()
    assert [task.id for task in claimed] == [second.id]
    assert waited < 0.5


def test_threads_claiming_at_once_never_get_the_same_task(transactional_db) -> None:
    q.NoOpQueue.add_tasks([None] * 400)
    claimed: list[int] = []
    lock = threading.Lock()

    def claim_all() -> None:
        claimer = Claimer(connection.alias, 0, ["noop"])
        try:
            while tasks := claimer.claim(7, timezone.now()):
                with lock:
                    claimed.extend(task.id for task in tasks)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(claimed) == 400 and len(set(claimed)) == 400


@postgresql_only
def test_a_postgresql_restart_under_load_loses_no_task_and_workers_carry_on(
    workers, record_file
) -> None:
    cluster = Cluster.attached()
    if cluster is None:
        pytest.skip("DATABASE_URL names a server this run did not start, so it cannot restart it")
    total = 3000
    ids = {info.id for info in q.RecordingQueue.add_tasks(range(total))}
    processes = [workers.start("--queues", "recording", "--threads", "2") for _ in range(2)]
    wait_until(lambda: len(recorded(record_file)) > 300, timeout=60, message="work under way")

    connection.close()
    cluster.restart()
    wait_until(
        lambda: count_unfinished() == 0,
        timeout=120,
        message="every task finished after the restart",
    )

    runs = Counter(int(line.split()[0]) for line in recorded(record_file))
    assert set(runs) == ids, "no task lost"
    assert status_counts() == {Status.SUCCEEDED: total}
    assert all(process.poll() is None for process in processes), "the workers survived the restart"
    q.RecordingQueue.add_task("after the restart")
    wait_until(
        lambda: "after the restart" in recorded(record_file)[-1],
        timeout=20,
        message="new work runs",
    )


def count_unfinished() -> int:
    for _ in range(50):
        try:
            return Task.objects.filter(status__in=[Status.READY, Status.RUNNING]).count()
        except Exception:  # the server may still be starting
            connection.close()
            time.sleep(0.2)
    raise AssertionError("the database did not come back")
