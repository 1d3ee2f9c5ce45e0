"""The engine's guarantees under faults, proven with real worker processes and injected faults.

No task run twice by mistake, none lost, none stuck, no worker silently dead. Invariants are read
from records the tasks write themselves (see sample_guarantees), which survive a SIGKILL of the
worker.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from taskqueue.engine import liveness, operations
from taskqueue.engine.claim import Claimer
from taskqueue.engine.outcomes import Recorder, RetryLater, Start, Succeeded
from taskqueue.models import Status, Task, WorkerProcess
from taskqueue.worker.threads import Worker, WorkerGroup
from tests.conftest import recorded, wait_until
from tests.taskqueue import sample_guarantees as g
from tests.taskqueue import sample_queues as q

# Short timings, so a worker falls silent for longer than WORKER_DEAD_AFTER within a test.
FAST_LIVENESS = {"TASKQUEUE_HEARTBEAT_INTERVAL": "0.5", "TASKQUEUE_WORKER_DEAD_AFTER": "3"}


def starts(record_file) -> Counter[str]:
    return Counter(line.split()[1] for line in recorded(record_file) if line.startswith("start "))


def ends(record_file) -> Counter[str]:
    return Counter(line.split()[1] for line in recorded(record_file) if line.startswith("end "))


@pytest.mark.slow
def test_a_paused_worker_is_not_presumed_dead_and_its_task_runs_once(workers, record_file) -> None:
    info = g.RecordedQueue.add_task(6.0)
    paused = workers.start("--queues", "recorded", **FAST_LIVENESS)
    wait_until(
        lambda: starts(record_file)[str(info.id)] == 1, timeout=30, message="the task started"
    )
    workers.start("--queues", "recorded", **FAST_LIVENESS)
    wait_until(
        lambda: WorkerProcess.objects.count() == 2,
        timeout=30,
        message="the second worker registered",
    )

    paused.send_signal(signal.SIGSTOP)
    try:
        time.sleep(6)  # twice WORKER_DEAD_AFTER without a heartbeat
        assert Task.objects.get(pk=info.id).status == Status.RUNNING, (
            "a paused worker is alive: its pid proves it"
        )
    finally:
        paused.send_signal(signal.SIGCONT)

    wait_until(
        lambda: Task.objects.get(pk=info.id).status == Status.SUCCEEDED,
        timeout=30,
        message="it finished",
    )
    assert starts(record_file)[str(info.id)] == 1, "the task ran once"
    assert Task.objects.get(pk=info.id).attempts == 1


@pytest.mark.slow
def test_tasks_behind_a_slow_one_in_a_batch_go_to_an_idle_worker_and_finished_ones_never_run_again(
    workers, record_file
) -> None:
    # Fifteen quick tasks grow the first worker's batch to eight (1, 2, 4, 8); the next batch is the
    # slow task and the seven quick ones behind it.
    quick_before = g.RecordedQueue.add_tasks([0.0] * 15)
    slow = g.RecordedQueue.add_task(20.0)
    quick_behind = g.RecordedQueue.add_tasks([0.0] * 7)
    first = workers.start("--queues", "recorded", "--batch-size", "8")
    wait_until(
        lambda: starts(record_file)[str(slow.id)] == 1, timeout=30, message="the slow task started"
    )
    slow_started = time.monotonic()

    workers.start("--queues", "recorded")
    behind = [str(info.id) for info in quick_behind]
    wait_until(
        lambda: all(ends(record_file)[i] for i in behind),
        timeout=15,
        message="the ones behind it ran",
    )
    assert time.monotonic() - slow_started < 15, "they did not wait for the slow task"
    assert Task.objects.get(pk=slow.id).status == Status.RUNNING

    first.send_signal(signal.SIGKILL)
    wait_until(
        lambda: Task.objects.get(pk=slow.id).status == Status.SUCCEEDED,
        timeout=60,
        message="recovered",
    )

    runs = starts(record_file)
    assert all(runs[str(info.id)] == 1 for info in [*quick_before, *quick_behind]), (
        "no finished task ran again"
    )
    assert runs[str(slow.id)] == 2, "the interrupted one ran again"
    assert Task.objects.get(pk=slow.id).attempts == 2, (
        "the crash counted for the task that was running"
    )
    for info in [*quick_before, *quick_behind]:
        assert Task.objects.get(pk=info.id).attempts == 1, "no unstarted task was charged"


@pytest.mark.slow
def test_poison_rows_fail_alone_and_the_worker_carries_on(workers, record_file) -> None:
    huge = g.RecordedQueue.add_task(0.0)
    bad_errors = g.RecordedQueue.add_task(0.0)
    with connection.cursor() as cursor:
        # An integer Python's json refuses (more than 4,300 digits); the database stores it as
        # given.
        cursor.execute(
            "UPDATE taskqueue_task SET payload = %s WHERE id = %s",
            ['{"arg": ' + "7" * 5000 + "}", huge.id],
        )
        cursor.execute(
            "UPDATE taskqueue_task SET errors = %s WHERE id = %s",
            ['{"not": "a list"}', bad_errors.id],
        )
    nul_error = g.fails_with_nul.enqueue()
    nul_value = g.returns_nul.enqueue()
    fine = g.RecordedQueue.add_tasks([0.0] * 5)
    worker = workers.start("--queues", "recorded")

    wait_until(
        lambda: (
            not Task.objects.filter(status__in=[Status.READY, Status.RUNNING])
            .defer("payload")
            .exists()
        ),
        timeout=60,
        message="every task ended",
    )
    decoded = Task.objects.defer("payload").get(pk=huge.id)  # which Python cannot read
    assert decoded.status == Status.FAILED and decoded.errors[-1]["exc_class"].endswith(
        "DeserializationExc"
    )
    assert "cannot be decoded" in decoded.errors[-1]["message"]
    # An error history that is not a list does not stop the task from running; it is replaced by one
    # entry that keeps the old text, so every reader of the row (admin, result objects) can read it.
    corrupt = Task.objects.get(pk=bad_errors.id)
    assert corrupt.status == Status.SUCCEEDED
    assert [entry["exc_class"] for entry in corrupt.errors] == ["taskqueue.CorruptRow"]
    assert '{"not": "a list"}' in corrupt.errors[0]["message"]
    failed = Task.objects.get(pk=int(nul_error.id))
    assert failed.status == Status.FAILED and "\ufffd" in failed.errors[-1]["message"]
    returned = Task.objects.get(pk=int(nul_value.id))
    assert returned.status == Status.SUCCEEDED and returned.return_value == {
        "text": "before\ufffdafter"
    }
    assert "replaced with U+FFFD" in returned.note
    assert all(Task.objects.get(pk=info.id).status == Status.SUCCEEDED for info in fine)
    assert worker.poll() is None, "the worker lives on"
    assert "died" not in workers.logs() and "unexpected error" not in workers.logs()


def claimed_pair() -> tuple[Recorder, list]:
    process = liveness.register(connection.alias, "test", ["*"], 1)
    q.NoOpQueue.add_tasks([1, 2])
    tasks = Claimer(connection.alias, process.pk, ["noop"]).claim(2, timezone.now())
    return Recorder(connection.alias, process.pk, "test", 3600), tasks


@pytest.mark.django_db
def test_a_cancel_reaches_a_task_claimed_in_a_batch_but_not_started() -> None:
    recorder, (first, second) = claimed_pair()
    assert recorder.begin(first) is Start.RUN
    operations.cancel([second.id])
    recorder.add(Succeeded(first))

    assert recorder.begin(second) is Start.CANCELLED, "it never runs"
    row = Task.objects.get(pk=second.id)
    assert (row.status, row.attempts) == (Status.CANCELLED, 0) and row.finished_at is not None
    assert Task.objects.get(pk=first.id).status == Status.SUCCEEDED, (
        "the outcome before it was written with it"
    )


@pytest.mark.django_db
def test_a_stale_outcome_from_a_worker_presumed_dead_is_dropped_and_logged(caplog) -> None:
    recorder, (first, _) = claimed_pair()
    assert recorder.begin(first) is Start.RUN
    # Meanwhile its worker was presumed dead, and the task recovered and claimed by another.
    Task.objects.filter(pk=first.id).update(claims=first.claims + 1, attempts=2)

    recorder.add(Succeeded(first, return_value="stale"))
    with caplog.at_level(logging.WARNING, logger="taskqueue.worker"):
        recorder.flush()
    row = Task.objects.get(pk=first.id)
    assert (row.status, row.return_value, row.attempts) == (Status.RUNNING, None, 2)
    assert "stale outcome dropped" in caplog.text


@pytest.mark.django_db
def test_a_claimed_task_is_charged_only_when_it_starts() -> None:
    recorder, (first, second) = claimed_pair()
    assert set(Task.objects.values_list("attempts", flat=True)) == {0}
    recorder.begin(first)
    assert dict(Task.objects.values_list("pk", "attempts")) == {first.id: 1, second.id: 0}
    row = Task.objects.get(pk=second.id)
    assert row.started_at is None and row.status == Status.RUNNING


@pytest.mark.django_db
def test_with_no_retention_no_successful_row_stays_even_one_with_a_return_value(drain) -> None:
    from tests.taskqueue import sample_tasks

    sample_tasks.add.enqueue(2, 3)
    q.NoOpQueue.add_task(None)
    assert drain(retention=0) == 2
    assert not Task.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_worker_thread_that_dies_stops_its_group_with_the_reason() -> None:
    class Doomed(Worker):
        def _loop(self, group: WorkerGroup) -> None:
            raise SystemExit("boom")

    group = WorkerGroup(
        [Doomed(queues=["noop"]), Worker(queues=["noop"])], name="doomed", schedule=False
    )
    group.start()
    group.join(timeout=30)
    assert not group.is_alive()
    assert group.failure and "boom" in group.failure
    assert not WorkerProcess.objects.exists(), "it deregistered on the way out"


@pytest.mark.django_db(transaction=True)
def test_stopping_a_group_from_python_does_not_put_back_a_task_its_thread_still_runs(
    record_file,
) -> None:
    info = g.RecordedQueue.add_task(3.0)
    from taskqueue.conf import load_settings

    engine = load_settings({"SHUTDOWN_TIMEOUT": 0.5})
    group = WorkerGroup(
        [Worker(queues=["recorded"])], name="in-process", settings=engine, schedule=False
    )
    group.start()
    wait_until(
        lambda: starts(record_file)[str(info.id)] == 1, timeout=20, message="the task started"
    )
    stopper = threading.Thread(target=group.stop)
    stopper.start()
    time.sleep(1.5)  # past the shutdown timeout, while the task still runs
    assert Task.objects.get(pk=info.id).status == Status.RUNNING, (
        "not put back while its thread runs it"
    )
    stopper.join(timeout=30)
    assert Task.objects.get(pk=info.id).status == Status.SUCCEEDED
    assert starts(record_file)[str(info.id)] == 1


@pytest.mark.django_db
def test_a_retried_holder_whose_slot_expired_waits_for_a_slot_not_making_limit_plus_one() -> None:
    process = liveness.register(connection.alias, "test", ["*"], 1)
    holder = g.BrieflyExclusiveQueue.add_task({"account": 1})
    (claimed,) = Claimer(connection.alias, process.pk, ["briefly-exclusive"]).claim(
        1, timezone.now()
    )
    recorder = Recorder(connection.alias, process.pk, "test", 3600)
    recorder.begin(claimed)
    time.sleep(0.3)  # the holder's slot expires while it runs: a new task of the key is admitted
    newcomer = g.BrieflyExclusiveQueue.add_task({"account": 1})
    assert Task.objects.get(pk=newcomer.id).status == Status.READY

    recorder.add(RetryLater(claimed))
    recorder.flush()
    assert Task.objects.get(pk=holder.id).status == Status.BLOCKED, (
        "it waits for the slot the newcomer holds"
    )


@pytest.mark.django_db
def test_pruning_deletes_every_expired_success_in_one_pass_at_drain_rates() -> None:
    infos = q.NoOpQueue.add_tasks([None] * 12_000)
    long_ago = timezone.now() - timedelta(days=2)
    Task.objects.filter(pk__in=[info.id for info in infos]).update(
        status=Status.SUCCEEDED, finished_at=long_ago
    )
    kept = q.NoOpQueue.add_task(None)
    Task.objects.filter(pk=kept.id).update(status=Status.SUCCEEDED, finished_at=timezone.now())

    started = time.monotonic()
    assert liveness.prune_finished(connection.alias, retention=86400, budget=30) == 12_000
    assert list(Task.objects.values_list("pk", flat=True)) == [kept.id]
    print(f"pruned 12,000 rows in {time.monotonic() - started:.2f}s")


@pytest.mark.slow
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="LISTEN/NOTIFY is PostgreSQL's")
def test_a_wake_up_for_a_task_stamped_by_a_clock_a_little_ahead_is_not_wasted(
    workers, record_file
) -> None:
    workers.start("--queues", "recording", "--interval", "30")
    wait_until(
        lambda: WorkerProcess.objects.count() == 1, timeout=20, message="the worker registered"
    )
    time.sleep(2)  # past its first polls: from now on only a notification wakes it within 30 s
    enqueued = time.monotonic()
    # As if enqueued on a host whose clock runs 50 ms ahead of the worker's.
    q.RecordingQueue.add_task(
        "ahead", first_attempt_datetime=timezone.now() + timedelta(milliseconds=50)
    )
    wait_until(
        lambda: len(recorded(record_file)) == 1,
        timeout=5,
        message="the worker looked again shortly",
    )
    assert time.monotonic() - enqueued < 3
