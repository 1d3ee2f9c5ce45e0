"""Recurring tasks: cron with time zones, every tick enqueued exactly once, missed ticks not
replayed."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from taskqueue import recurring
from taskqueue.exceptions import TaskQueueError
from taskqueue.models import RecurringRun, RecurringTask, Task
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db
NOOP = "tests.taskqueue.sample_queues.NoOpQueue"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_latest_and_next_tick_follow_the_time_zone() -> None:
    nightly = recurring.Schedule.parse(
        "0 3 * * *", "Europe/Riga"
    )  # 03:00 in Riga is 01:00 UTC in November
    assert nightly.latest_tick(at("2026-11-21 08:00:00")) == at("2026-11-21 01:00:00")
    assert nightly.next_tick(at("2026-11-21 08:00:00")) == at("2026-11-22 01:00:00")
    every_second = recurring.Schedule.parse("* * * * * *", "UTC")
    assert every_second.latest_tick(at("2026-11-21 08:00:05")) == at("2026-11-21 08:00:05"), (
        "a tick exactly now"
    )
    assert every_second.latest_tick(at("2026-11-21 08:00:05.5")) == at("2026-11-21 08:00:05")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schedule": "every day"}, "is not a cron schedule"),
        ({"timezone": "Mars/Olympus"}, "is not a time zone"),
        ({"task_path": "no.such.Task"}, "no.such.Task is not a declared task"),
        (
            {"task_path": "tests.taskqueue.sample_queues.NotAQueue"},
            "NotAQueue is not a declared task",
        ),
        ({"task_path": "os.system"}, "os.system is not a declared task"),
        ({"args": {"a": 1}}, "args must be a list"),
    ],
)
def test_a_schedule_that_could_never_run_is_refused(changes: dict, message: str) -> None:
    values = {"task_path": NOOP, "schedule": "* * * * *"} | changes
    with pytest.raises(TaskQueueError, match=message):
        recurring.schedule_recurring("bad", **values)
    assert not RecurringTask.objects.exists()


def test_dynamic_schedules_are_created_changed_and_removed() -> None:
    recurring.schedule_recurring("digest", NOOP, "0 8 * * *", description="morning digest")
    recurring.schedule_recurring("digest", NOOP, "0 9 * * *", timezone="Asia/Tokyo")
    task = RecurringTask.objects.get()
    assert (task.schedule, task.timezone, task.description, task.static) == (
        "0 9 * * *",
        "Asia/Tokyo",
        "morning digest",
        False,
    )
    assert recurring.unschedule_recurring("digest") and not RecurringTask.objects.exists()
    assert not recurring.unschedule_recurring("digest")


def test_a_due_tick_is_enqueued_once_however_often_schedulers_look() -> None:
    task = recurring.schedule_recurring("often", NOOP, "*/5 * * * *")
    RecurringTask.objects.filter(pk=task.pk).update(created_at=at("2026-11-21 07:00:00"))
    now = at("2026-11-21 08:07:00")
    assert recurring.run_due(now) == 1
    assert recurring.run_due(now) == 0
    assert recurring.run_due(now + timedelta(minutes=2)) == 0, "still the 08:05 tick"
    assert recurring.run_due(now + timedelta(minutes=3)) == 1, "the 08:10 tick"
    ticks = list(
        RecurringRun.objects.values_list("scheduled_at", flat=True).order_by("scheduled_at")
    )
    assert ticks == [at("2026-11-21 08:05:00"), at("2026-11-21 08:10:00")]
    assert Task.objects.filter(note="recurring often").count() == 2


def test_a_tick_taken_by_another_scheduler_is_not_enqueued_again() -> None:
    task = recurring.schedule_recurring("once", NOOP, "* * * * *")
    tick = at("2026-11-21 08:00:00")
    assert recurring.run_tick(task, tick) is True
    assert recurring.run_tick(RecurringTask.objects.get(pk=task.pk), tick) is False
    assert Task.objects.count() == 1


def test_ticks_missed_while_nothing_ran_are_not_replayed_in_a_burst() -> None:
    task = recurring.schedule_recurring("hourly", NOOP, "0 * * * *")
    RecurringTask.objects.filter(pk=task.pk).update(
        created_at=at("2026-11-20 20:00:00"), last_run_at=at("2026-11-20 22:00:00")
    )
    assert recurring.run_due(at("2026-11-21 06:30:00")) == 1, "one run for the night, not eight"
    assert RecurringRun.objects.get().scheduled_at == at("2026-11-21 06:00:00")


def test_ticks_a_busy_scheduler_skipped_by_a_moment_are_each_run() -> None:
    task = recurring.schedule_recurring("every-second", NOOP, "* * * * * *")
    RecurringTask.objects.filter(pk=task.pk).update(
        created_at=at("2026-11-21 08:00:00"), last_run_at=at("2026-11-21 08:00:10")
    )
    assert recurring.run_due(at("2026-11-21 08:00:13.2")) == 3, "ticks 11, 12 and 13"
    assert recurring.run_due(at("2026-11-21 08:01:00.5")) == 5, (
        "the latest, and those of the 5 s before it"
    )
    ticks = list(
        RecurringRun.objects.values_list("scheduled_at", flat=True).order_by("scheduled_at")
    )
    assert ticks[-5:] == [at(f"2026-11-21 08:00:{second:02}") for second in (56, 57, 58, 59)] + [
        at("2026-11-21 08:01:00")
    ]


def test_a_tick_from_before_the_schedule_existed_is_not_run() -> None:
    recurring.schedule_recurring("new", NOOP, "0 * * * *")
    assert recurring.run_due() == 0


def test_disabled_schedules_do_not_run() -> None:
    task = recurring.schedule_recurring("off", NOOP, "* * * * *", enabled=False)
    RecurringTask.objects.filter(pk=task.pk).update(created_at=at("2026-11-21 00:00:00"))
    assert recurring.run_due() == 0


def test_every_front_door_can_be_scheduled() -> None:
    targets = {
        "queue": ("tests.taskqueue.sample_queues.RecordingQueue", ["hello"], {}),
        "django": ("tests.taskqueue.sample_tasks.add", [1, 2], {}),
        "celery": ("tests.taskqueue.sample_celery.notify", [5], {"channel": "sms"}),
    }
    for kind, (path, args, kwargs) in targets.items():
        task = recurring.schedule_recurring(
            kind, path, "* * * * *", args=args, kwargs=kwargs, priority=4
        )
        RecurringTask.objects.filter(pk=task.pk).update(created_at=at("2026-11-21 00:00:00"))
    assert recurring.run_due() == 3
    stored = {row.kind: row for row in Task.objects.all()}
    assert stored["queue"].payload == {"arg": "hello"}
    assert stored["django"].payload == {"args": [1, 2], "kwargs": {}}
    assert stored["celery"].payload == {"args": [5], "kwargs": {"channel": "sms"}}
    assert {row.priority for row in stored.values()} == {4}


def test_static_schedules_follow_the_settings() -> None:
    recurring.sync_static(
        {
            "a": {"task_path": NOOP, "schedule": "0 3 * * *"},
            "b": {"task_path": NOOP, "schedule": "0 4 * * *"},
        }
    )
    recurring.schedule_recurring("dynamic", NOOP, "0 5 * * *")
    recurring.sync_static(
        {"a": {"task_path": NOOP, "schedule": "30 3 * * *", "description": "moved"}}
    )
    assert dict(RecurringTask.objects.values_list("key", "schedule")) == {
        "a": "30 3 * * *",
        "dynamic": "0 5 * * *",
    }
    assert RecurringTask.objects.get(key="a").static


def test_the_admin_lists_next_runs_and_runs_now(admin_client: Client) -> None:
    task = recurring.schedule_recurring("report", NOOP, "0 3 * * *", timezone="Europe/Riga")
    page = admin_client.get(reverse("admin:taskqueue_recurringtask_changelist")).text
    assert "report" in page and "T01:00:00+00:00" in page  # the next 03:00 in Riga, in UTC
    changelist = reverse("admin:taskqueue_recurringtask_changelist")
    admin_client.post(changelist, {"action": "disable", "_selected_action": [task.pk]})
    assert not RecurringTask.objects.get().enabled
    admin_client.post(changelist, {"action": "run_now", "_selected_action": [task.pk]})
    assert Task.objects.filter(task_path=NOOP).count() == 1
    assert User.objects.filter(is_superuser=True).exists()


@pytest.mark.slow
def test_three_scheduling_workers_enqueue_every_tick_exactly_once(workers) -> None:
    task = recurring.schedule_recurring("fast", NOOP, "* * * * * *")  # every second
    for _ in range(3):
        workers.start("--only-schedule")
    # Twenty ticks, every one contended by three schedulers.
    wait_until(lambda: RecurringRun.objects.count() >= 20, timeout=90, message="twenty ticks")
    workers.stop_all()
    ticks = sorted(
        RecurringRun.objects.filter(recurring=task).values_list("scheduled_at", flat=True)
    )
    assert len(ticks) >= 20
    assert max(Counter(ticks).values()) == 1
    gaps = {b - a for a, b in itertools.pairwise(ticks)}
    assert gaps == {timedelta(seconds=1)}, "no tick missed between the first and the last"
    assert Task.objects.filter(task_path=NOOP).count() == len(ticks), "one task per tick"
    assert timezone.now() - ticks[-1] < timedelta(seconds=5)
