"""Recurring tasks under faults: each bad schedule fails alone, the scheduler never dies, old runs
go."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from taskqueue import recurring
from taskqueue.conf import load_settings
from taskqueue.exceptions import TaskQueueError
from taskqueue.models import RecurringRun, RecurringTask, Task
from taskqueue.worker.scheduler import Scheduler
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db
NOOP = "tests.taskqueue.sample_queues.NoOpQueue"
GONE = "tests.taskqueue.gone_after_deploy.NightlyQueue"  # a module the last deploy removed
NEVER = "0 0 31 2 *"  # 31 February: valid cron, no such date


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def stored(
    key: str, task_path: str = NOOP, schedule: str = "* * * * *", **fields: object
) -> RecurringTask:
    """A row as a direct insert or an earlier release left it, never validated."""
    created_at = fields.pop("created_at", at("2026-11-21 00:00:00"))
    return RecurringTask.objects.create(
        key=key, task_path=task_path, schedule=schedule, created_at=created_at, **fields
    )


def row(key: str) -> RecurringTask:
    return RecurringTask.objects.get(key=key)


def scheduler(**settings: object) -> Scheduler:
    return Scheduler(load_settings({"SCHEDULER_INTERVAL": 0.05, **settings}), threading.Event())


# 1. A schedule whose task module is gone


def test_a_schedule_whose_module_is_gone_fails_alone_and_records_why() -> None:
    stored("gone", GONE)
    stored("fine")
    assert recurring.run_due(at("2026-11-21 08:00:30")) == 1
    assert Task.objects.get().note == "recurring fine"
    gone = row("gone")
    assert gone.last_error.startswith(f"UndeclaredTask: {GONE} is not a declared task")
    assert gone.last_error_at is not None and gone.last_run_at is None


def test_the_traceback_is_logged_once_per_distinct_error(caplog: pytest.LogCaptureFixture) -> None:
    stored("gone", GONE)
    caplog.set_level(logging.INFO, logger="taskqueue.recurring")
    for minute in range(3):  # the same error at every pass
        recurring.run_due(at(f"2026-11-21 08:0{minute}:30"))
    RecurringTask.objects.filter(key="gone").update(task_path="tests.taskqueue.also_gone.Queue")
    recurring.run_due(at("2026-11-21 08:03:30"))
    logged = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(logged) == 2 and all(record.exc_info for record in logged)
    assert "gone_after_deploy" in logged[0].getMessage() and "also_gone" in logged[1].getMessage()


def test_the_next_tick_enqueued_clears_the_error() -> None:
    stored("gone", GONE)
    recurring.run_due(at("2026-11-21 08:00:30"))
    assert row("gone").last_error
    RecurringTask.objects.filter(key="gone").update(task_path=NOOP)  # the module is back
    assert recurring.run_due(at("2026-11-21 08:01:30")) == 1
    assert (row("gone").last_error, row("gone").last_error_at) == ("", None)


def test_the_admin_shows_a_schedules_error(admin_client: Client) -> None:
    stored("gone", GONE)
    recurring.run_due(at("2026-11-21 08:00:30"))
    changelist = admin_client.get(reverse("admin:taskqueue_recurringtask_changelist"))
    change = admin_client.get(
        reverse("admin:taskqueue_recurringtask_change", args=[row("gone").pk])
    )
    for page in (changelist, change):
        assert page.status_code == 200
        assert f"{GONE} is not a declared task" in page.text


def test_run_now_of_a_schedule_whose_module_is_gone_reports_it_and_runs_the_others(
    admin_client: Client,
) -> None:
    gone, fine = stored("gone", GONE), stored("fine")
    changelist = reverse("admin:taskqueue_recurringtask_changelist")
    page = admin_client.post(
        changelist, {"action": "run_now", "_selected_action": [gone.pk, fine.pk]}, follow=True
    )
    assert page.status_code == 200 and "Not enqueued: gone (UndeclaredTask" in page.text
    assert Task.objects.get().task_path == NOOP


@pytest.mark.slow
def test_bad_schedules_stop_no_worker_scheduler(workers) -> None:
    """The module-gone and 31-February rows used to kill the scheduler thread of every worker for
    good."""
    stored("gone", GONE, "* * * * * *")
    stored("never", schedule=NEVER)
    fine = stored("fine", NOOP, "* * * * * *", created_at=timezone.now())
    processes = [workers.start("--only-schedule") for _ in range(2)]
    wait_until(
        lambda: RecurringRun.objects.filter(recurring=fine).count() >= 10,
        timeout=30,
        message="10 ticks",
    )
    assert all(process.poll() is None for process in processes)
    workers.stop_all()
    ticks = sorted(
        RecurringRun.objects.filter(recurring=fine).values_list("scheduled_at", flat=True)
    )
    assert {b - a for a, b in itertools.pairwise(ticks)} == {timedelta(seconds=1)}, (
        "every tick on time"
    )
    assert "UndeclaredTask" in row("gone").last_error and "never comes" in row("never").last_error
    logs = workers.logs()
    assert 1 <= logs.count("recurring task gone failed") <= 2, (
        "once, or once per worker at the most"
    )
    assert logs.count("recurring task never failed") <= 2


# 2. Static schedules sync one by one


def test_each_static_schedule_syncs_alone(caplog: pytest.LogCaptureFixture) -> None:
    valid = {"task_path": NOOP, "schedule": "0 3 * * *"}
    recurring.sync_static({"kept": valid, "broken": valid, "removed": valid})
    invalid = recurring.sync_static(
        {
            "kept": valid | {"schedule": "0 4 * * *"},
            "broken": valid | {"args": {"a": 1}},
            "added": valid,
        }
    )
    assert invalid == {"broken"}
    assert dict(RecurringTask.objects.values_list("key", "schedule")) == {
        "kept": "0 4 * * *",
        "broken": "0 3 * * *",  # as it was: the settings' new version is refused
        "added": "0 3 * * *",
    }
    assert "args must be a list" in row("broken").last_error and row("broken").last_error_at
    assert "'broken' in settings is invalid" in caplog.text
    recurring.sync_static({"broken": valid | {"args": [1]}})  # fixed in the settings
    assert (row("broken").args, row("broken").last_error) == ([1], "")


def test_a_static_schedule_invalid_in_settings_is_not_run_and_the_others_are() -> None:
    every_minute = {"task_path": NOOP, "schedule": "* * * * *"}
    recurring.sync_static({"broken": every_minute})
    RecurringTask.objects.update(created_at=at("2026-11-21 00:00:00"))
    passes = scheduler(RECURRING={"broken": every_minute | {"kwargs": [1]}, "fine": every_minute})
    passes.run_pass()
    RecurringTask.objects.update(created_at=at("2026-11-21 00:00:00"))
    passes.run_pass()
    assert list(Task.objects.values_list("note", flat=True)) == ["recurring fine"]
    assert "kwargs a dict" in row("broken").last_error, (
        "still shown: no tick of its old version cleared it"
    )


# 3. A date that never comes


def test_a_date_that_never_comes_is_refused_by_schedule_recurring() -> None:
    with pytest.raises(TaskQueueError, match=r"'0 0 31 2 \*' never comes"):
        recurring.schedule_recurring("never", NOOP, NEVER)
    assert not RecurringTask.objects.exists()
    assert recurring.schedule_recurring("leap-day", NOOP, "0 0 29 2 *"), "rare is not never"


def test_a_date_that_never_comes_is_refused_by_the_static_sync() -> None:
    assert recurring.sync_static({"never": {"task_path": NOOP, "schedule": NEVER}}) == {"never"}
    assert not RecurringTask.objects.exists()


def test_a_date_that_never_comes_is_refused_by_the_admin_form(admin_client: Client) -> None:
    fields = {
        "key": "never",
        "task_path": NOOP,
        "schedule": NEVER,
        "timezone": "UTC",
        "args": "[]",
        "kwargs": "{}",
    }
    page = admin_client.post(
        reverse("admin:taskqueue_recurringtask_add"), fields | {"enabled": "on"}
    )
    assert page.status_code == 200, "the form again, with the error"
    assert "&#x27;0 0 31 2 *&#x27; never comes" in page.text
    assert not RecurringTask.objects.exists()


def test_a_stored_date_that_never_comes_breaks_no_admin_page(admin_client: Client) -> None:
    dynamic, static = (
        stored("never", schedule=NEVER),
        stored("never-static", schedule=NEVER, static=True),
    )
    changelist = admin_client.get(reverse("admin:taskqueue_recurringtask_changelist"))
    assert changelist.status_code == 200 and "never comes" in changelist.text
    for task in (dynamic, static):
        change = admin_client.get(reverse("admin:taskqueue_recurringtask_change", args=[task.pk]))
        assert change.status_code == 200 and "never comes" in change.text


def test_a_stored_date_that_never_comes_fails_alone() -> None:
    stored("never", schedule=NEVER)
    stored("fine")
    assert recurring.run_due(at("2026-11-21 08:00:30")) == 1
    assert "never comes" in row("never").last_error


# 4. Nothing ends the scheduler thread


@pytest.mark.django_db(transaction=True)
def test_an_unexpected_error_in_a_pass_is_logged_and_the_next_pass_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_run_due, calls = recurring.run_due, []

    def fails_once(**options: object) -> int:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("injected")
        return real_run_due(**options)

    monkeypatch.setattr(recurring, "run_due", fails_once)
    thread = scheduler()
    started = thread.last_pass_ok_at
    thread.start()
    try:
        wait_until(
            lambda: thread.last_pass_ok_at > started,
            timeout=10,
            message="a pass after the failed one",
        )
        assert thread.is_alive() and len(calls) >= 2
    finally:
        thread.stopping.set()
        thread.join(timeout=10)
    failure = next(record for record in caplog.records if "unexpected error" in record.getMessage())
    assert failure.exc_info and "injected" in str(failure.exc_info[1])


def test_a_pass_where_a_schedule_failed_alone_still_counts_as_a_pass() -> None:
    stored("gone", GONE)
    passes = scheduler()
    before = passes.last_pass_ok_at
    passes.run_pass()
    assert passes.last_pass_ok_at > before


# 6. Runs are pruned


def test_a_stale_scheduler_enqueues_no_tick_again_after_its_run_was_pruned() -> None:
    task = stored("once")
    tick = at("2026-11-21 08:00:00")
    assert recurring.run_tick(task, tick) is True
    RecurringRun.objects.all().delete()
    assert recurring.run_tick(task, tick) is False, "`task` still says last_run_at=None"
    assert Task.objects.count() == 1


def test_the_scheduler_prunes_old_runs_in_bounded_batches() -> None:
    task = stored("often", enabled=False)  # no new runs in these passes
    now = timezone.now()
    old = [now - timedelta(days=2, seconds=second) for second in range(25)]
    recent = [now - timedelta(hours=1, seconds=second) for second in range(3)]
    RecurringRun.objects.bulk_create(
        RecurringRun(recurring=task, scheduled_at=tick, task_id=0) for tick in old + recent
    )
    passes = scheduler()
    passes.prune_batch = 10
    remaining = []
    for _ in range(4):
        passes.run_pass()
        remaining.append(RecurringRun.objects.count())
    assert remaining == [18, 8, 3, 3], (
        "a batch a pass while there are more, then nothing left to prune"
    )
    assert sorted(RecurringRun.objects.values_list("scheduled_at", flat=True)) == sorted(recent)
