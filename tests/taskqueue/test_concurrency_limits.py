"""Concurrency limits: per-key slots across processes, blocked tasks promoted as slots free."""

from __future__ import annotations

import itertools
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connections
from django.tasks.exceptions import InvalidTask
from django.utils import timezone

from taskqueue import BaseQueue
from taskqueue.engine import concurrency, operations
from taskqueue.models import ConcurrencyKey, Status, Task
from tests.conftest import recorded, wait_until
from tests.taskqueue import sample_celery as c
from tests.taskqueue import sample_queues as q
from tests.taskqueue import sample_tasks as t

pytestmark = pytest.mark.django_db


def statuses(*ids: int | str) -> list[str]:
    found = dict(Task.objects.filter(pk__in=[int(i) for i in ids]).values_list("pk", "status"))
    return [found[int(i)] for i in ids]


def test_a_second_task_of_a_key_waits_until_the_first_finishes(drain) -> None:
    first = q.ExclusiveQueue.add_task({"account": 1})
    second = q.ExclusiveQueue.add_task({"account": 1})
    other = q.ExclusiveQueue.add_task({"account": 2})
    assert statuses(first.id, second.id, other.id) == [Status.READY, Status.BLOCKED, Status.READY]
    assert Task.objects.get(pk=first.id).concurrency_key == "account:1"
    assert drain("exclusive", batch=1) == 3, (
        "the second is promoted as soon as the first's outcome is stored"
    )
    assert statuses(first.id, second.id, other.id) == [Status.SUCCEEDED] * 3


def test_discard_stores_the_extra_task_as_cancelled_with_the_reason() -> None:
    kept = q.SingletonQueue.add_task(None)
    extra = q.SingletonQueue.add_task(None)
    assert statuses(kept.id, extra.id) == [Status.READY, Status.CANCELLED]
    dropped = Task.objects.get(pk=extra.id)
    assert dropped.finished_at and dropped.last_error["exc_class"] == "taskqueue.ConcurrencyLimit"
    assert "concurrency limit 1 of 'the-one' reached" in dropped.last_error["message"]


def test_bulk_enqueue_admits_exactly_the_limit() -> None:
    infos = q.ExclusiveQueue.add_tasks([{"account": 7}] * 4)
    assert statuses(*(i.id for i in infos)) == [
        Status.READY,
        Status.BLOCKED,
        Status.BLOCKED,
        Status.BLOCKED,
    ]


def test_a_holder_past_its_duration_frees_its_slot() -> None:
    holder = q.ExclusiveQueue.add_task({"account": 3})
    waiting = q.ExclusiveQueue.add_task({"account": 3})
    Task.objects.filter(pk=holder.id).update(
        status=Status.RUNNING, started_at=timezone.now() - timedelta(seconds=30)
    )
    assert concurrency.sweep("default", timezone.now()) == 0, "30 s into a 60 s slot: still held"
    Task.objects.filter(pk=holder.id).update(started_at=timezone.now() - timedelta(seconds=61))
    assert concurrency.sweep("default", timezone.now()) == 1
    assert statuses(waiting.id) == [Status.READY]


def test_cancelling_the_holder_promotes_the_next_at_once() -> None:
    holder = q.ExclusiveQueue.add_task({"account": 4})
    waiting = q.ExclusiveQueue.add_task({"account": 4})
    operations.cancel([holder.id])
    assert statuses(holder.id, waiting.id) == [Status.CANCELLED, Status.READY]


def test_a_retried_task_waits_for_a_slot_like_a_new_one(drain) -> None:
    failed = q.ExclusiveQueue.add_task({"account": 5})
    Task.objects.filter(pk=failed.id).update(status=Status.FAILED, finished_at=timezone.now())
    holder = q.ExclusiveQueue.add_task({"account": 5})
    assert operations.retry([failed.id]).done == 1
    assert statuses(failed.id, holder.id) == [Status.BLOCKED, Status.READY]
    drain("exclusive", batch=1)
    assert statuses(failed.id, holder.id) == [Status.SUCCEEDED, Status.SUCCEEDED]


def test_django_tasks_and_celery_tasks_declare_limits_too(drain) -> None:
    results = [t.sync_account.enqueue(9, action) for action in ("a", "b", "c")]
    assert statuses(*(r.id for r in results)) == [Status.READY, Status.READY, Status.BLOCKED]
    assert Task.objects.get(pk=int(results[0].id)).concurrency_key == "account:9"
    first, second = c.ship.delay(12), c.ship.delay(12, carrier="ups")
    assert statuses(first.id, second.id) == [Status.READY, Status.CANCELLED]
    drain()
    assert t.sync_account.get_result(results[2].id).return_value == "9:c"


def test_bad_declarations_are_refused_when_declared_or_enqueued() -> None:
    with pytest.raises(ValueError, match="concurrency_limit"):

        class Zero(BaseQueue[None]):
            concurrency_key = "k"
            concurrency_limit = 0

    with pytest.raises(ValueError, match="on_conflict"):
        concurrency.concurrency_rule("k", 1, 10, "queue up")
    with pytest.raises(ValueError, match="Cannot build the concurrency key"):
        q.ExclusiveQueue.add_task({"acount": 1})
    with pytest.raises(InvalidTask, match="Cannot build the concurrency key"):
        t.sync_account.using().enqueue(action="x")
    assert not Task.objects.exists()


@pytest.mark.slow
def test_a_limit_of_one_never_lets_two_tasks_of_a_key_overlap(workers, record_file) -> None:
    per_key = 6
    for account in ("A", "B"):
        q.ExclusiveQueue.add_tasks([{"account": account, "seconds": 0.2}] * per_key)
    for _ in range(3):
        workers.start("--queues", "exclusive", "--threads", "2", "--interval", "0.1")
    wait_until(
        lambda: Task.objects.filter(status=Status.SUCCEEDED).count() == 2 * per_key,
        timeout=60,
        message="all ran",
    )
    spans: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for line in recorded(record_file):
        _, account, moment, task_id = line.split()
        spans[account][task_id].append(float(moment))
    for account in ("A", "B"):
        intervals = sorted(tuple(times) for times in spans[account].values())
        assert len(intervals) == per_key
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert start >= end, f"two tasks of {account} overlapped"
            assert start - end < 1.5, "a blocked task ran as soon as the slot freed"
    a_spans, b_spans = spans["A"].values(), spans["B"].values()
    assert any(a[0] < b[1] and b[0] < a[1] for a in a_spans for b in b_spans), (
        "other keys ran in parallel"
    )


def test_lock_rows_of_keys_no_unfinished_task_uses_are_pruned(drain) -> None:
    q.ExclusiveQueue.add_tasks([{"account": n} for n in range(5)])
    waiting = q.ExclusiveQueue.add_task({"account": "still-waiting"})
    Task.objects.filter(pk=waiting.id).update(run_at=timezone.now() + timedelta(hours=1))
    assert ConcurrencyKey.objects.count() == 6
    drain("exclusive")
    assert concurrency.prune_keys("default") == 5
    assert list(ConcurrencyKey.objects.values_list("key", flat=True)) == ["account:still-waiting"]
    # A key whose row was pruned is limited as before when it is used again.
    again = q.ExclusiveQueue.add_tasks([{"account": 0}] * 2)
    assert statuses(*(i.id for i in again)) == [Status.READY, Status.BLOCKED]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_pruning_lock_rows_during_a_storm_of_enqueues_never_lets_a_key_past_its_limit() -> None:
    """Four threads enqueue tasks of the same few keys while a fifth prunes the lock rows as fast as
    it can: every key still admits exactly one task (limit 1), the rest are blocked."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(action: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                action()
            except BaseException as error:
                errors.append(error)
            finally:
                connections.close_all()

        return run

    def enqueue(thread: int) -> None:
        for round_ in range(60):
            q.ExclusiveQueue.add_task({"account": f"{round_ % 3}-{round_ // 3}"})

    def prune() -> None:
        while not stop.is_set():
            concurrency.prune_keys("default")

    # Every key's lock row is there before its first task, with no task using it: prunable until the
    # first task of the key commits, which is the window where a lock could be taken on a deleted
    # row.
    ConcurrencyKey.objects.bulk_create(
        ConcurrencyKey(key=f"account:{n % 3}-{n // 3}") for n in range(60)
    )
    pruner = threading.Thread(target=guarded(prune))
    pruner.start()
    threads = [threading.Thread(target=guarded(lambda n=n: enqueue(n))) for n in range(4)]
    for each in threads:
        each.start()
    for each in threads:
        each.join(timeout=120)
    stop.set()
    pruner.join(timeout=30)
    assert not errors, errors
    ready = Counter(
        Task.objects.filter(status=Status.READY).values_list("concurrency_key", flat=True)
    )
    assert len(ready) == 60 and set(ready.values()) == {1}, (
        "one task admitted per key, however the rows came and went"
    )
    assert Task.objects.filter(status=Status.BLOCKED).count() == 3 * 60
