"""Recurring tasks: cron schedules with time zones, enqueued exactly once per tick.

    from taskqueue.recurring import schedule_recurring, unschedule_recurring

    schedule_recurring("nightly-report", "apps.reports.tasks.nightly", "0 3 * * *", timezone="Europe/Riga")
    unschedule_recurring("nightly-report")

Static schedules come from TASKQUEUE["RECURRING"] = {key: {"task_path": ..., "schedule": ...}}.

Any number of worker processes may run the scheduler: a tick is enqueued by whichever inserts its
RecurringRun row first (a unique constraint), so exactly once. Ticks missed while no scheduler ran are
not replayed: a scheduler enqueues the latest tick that is due, once (so after a night down, an hourly
task runs once, not eight times), plus any tick missed within the last few seconds (a busy moment),
and never a tick from before the schedule existed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from django.db import IntegrityError, router, transaction
from django.utils import timezone

from taskqueue.engine import executors
from taskqueue.exceptions import TaskQueueError
from taskqueue.models import RecurringRun, RecurringTask

logger = logging.getLogger("taskqueue.recurring")
# Ticks missed by less than this (schedulers busy or slow for a moment) are each still enqueued;
# older ones were missed while no scheduler ran, and are not replayed.
CATCH_UP = timedelta(seconds=5)
FIELDS = ("task_path", "schedule", "timezone", "args", "kwargs", "queue_name", "priority", "description")


@dataclass(frozen=True)
class Schedule:
    cron: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, cron: str, zone: str) -> Schedule:
        if not croniter.is_valid(cron):
            raise TaskQueueError(f"{cron!r} is not a cron schedule (5 fields, or 6 with seconds last).")
        try:
            return cls(cron, ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise TaskQueueError(f"{zone!r} is not a time zone name (such as 'UTC' or 'Europe/Riga').") from None

    def latest_tick(self, now: datetime) -> datetime:
        """The last tick at or before `now`, in UTC."""
        local = now.astimezone(self.zone)
        tick = croniter(self.cron, local).get_prev(datetime)
        following = croniter(self.cron, tick).get_next(datetime)
        return (following if following <= local else tick).astimezone(UTC)

    def previous_tick(self, tick: datetime) -> datetime:
        """The tick before `tick`, in UTC."""
        return croniter(self.cron, tick.astimezone(self.zone)).get_prev(datetime).astimezone(UTC)

    def next_tick(self, now: datetime) -> datetime:
        """The first tick after `now`, in UTC."""
        return croniter(self.cron, now.astimezone(self.zone)).get_next(datetime).astimezone(UTC)


def validate(values: dict[str, Any]) -> None:
    """Refuse a schedule that could never run: bad cron, zone, task path or arguments."""
    Schedule.parse(values["schedule"], values.get("timezone") or "UTC")
    try:
        target = executors.resolve(values["task_path"])
    except ImportError as error:
        raise TaskQueueError(f"{values['task_path']} cannot be imported: {error}") from None
    if not callable(
        getattr(target, "add_task", None) or getattr(target, "enqueue", None) or getattr(target, "apply_async", None)
    ):
        raise TaskQueueError(f"{values['task_path']} is no queue class, django.tasks task or @shared_task.")
    if not isinstance(values.get("args", []), list) or not isinstance(values.get("kwargs", {}), dict):
        raise TaskQueueError("args must be a list and kwargs a dict.")


def schedule_recurring(key: str, task_path: str, schedule: str, **options: Any) -> RecurringTask:
    """Create or change a dynamic recurring task. Options: timezone, args, kwargs, queue_name, priority,
    description, enabled."""
    values = {"task_path": task_path, "schedule": schedule, **options}
    unknown = set(values) - set(FIELDS) - {"enabled"}
    if unknown:
        raise TypeError(f"Unknown recurring task options: {sorted(unknown)}.")
    validate(values)
    using = router.db_for_write(RecurringTask)
    recurring, _ = RecurringTask.objects.using(using).update_or_create(
        key=key, defaults=values, create_defaults={**values, "created_at": timezone.now()}
    )
    return recurring


def unschedule_recurring(key: str) -> bool:
    deleted, _ = RecurringTask.objects.using(router.db_for_write(RecurringTask)).filter(key=key).delete()
    return bool(deleted)


def sync_static(definitions: dict[str, dict[str, Any]]) -> None:
    """Make the static recurring tasks those of the settings: add, change, remove."""
    using = router.db_for_write(RecurringTask)
    for key, definition in definitions.items():
        values = {field: definition[field] for field in FIELDS if field in definition}
        validate(values)
        RecurringTask.objects.using(using).update_or_create(
            key=key,
            defaults={**values, "static": True},
            create_defaults={**values, "static": True, "created_at": timezone.now()},
        )
    RecurringTask.objects.using(using).filter(static=True).exclude(key__in=list(definitions)).delete()


def enqueue_target(recurring: RecurringTask) -> int:
    """Enqueue one run through the task's own front door; returns the task id."""
    target = executors.resolve(recurring.task_path)
    args, kwargs = list(recurring.args), dict(recurring.kwargs)
    if hasattr(target, "add_task"):
        info = target.add_task(args[0] if args else None, note=f"recurring {recurring.key}",
                               priority=recurring.priority)  # fmt: skip
        return info.id
    if hasattr(target, "enqueue"):
        changes = {"queue_name": recurring.queue_name or None, "priority": recurring.priority}
        task = target.using(**{name: value for name, value in changes.items() if value is not None})
        return int(task.enqueue(*args, **kwargs).id)
    result = target.apply_async(args, kwargs, queue=recurring.queue_name or None, priority=recurring.priority)
    return int(result.id)


def due_ticks(recurring: RecurringTask, schedule: Schedule, now: datetime, catch_up: timedelta) -> list[datetime]:
    """The ticks to enqueue now: the latest due one, and those before it within `catch_up` (a slow
    scheduler's gap); never one already run or from before the schedule existed."""
    ticks: list[datetime] = []
    tick = schedule.latest_tick(now)
    while (
        tick >= recurring.created_at
        and (recurring.last_run_at is None or tick > recurring.last_run_at)
        and (not ticks or tick >= now - catch_up)
    ):
        ticks.append(tick)
        tick = schedule.previous_tick(tick)
    return ticks[::-1]


def run_due(now: datetime | None = None, catch_up: timedelta = CATCH_UP) -> int:
    """Enqueue every enabled recurring task's due ticks not yet run. Returns how many were enqueued."""
    now = now or timezone.now()
    using = router.db_for_write(RecurringTask)
    enqueued = 0
    for recurring in RecurringTask.objects.using(using).filter(enabled=True):
        schedule = Schedule.parse(recurring.schedule, recurring.timezone)
        for tick in due_ticks(recurring, schedule, now, catch_up):
            enqueued += run_tick(recurring, tick)
    return enqueued


def run_tick(recurring: RecurringTask, tick: datetime) -> bool:
    """Enqueue `recurring` for `tick` unless another scheduler already has. True if this one did."""
    using = router.db_for_write(RecurringTask)
    try:
        with transaction.atomic(using=using):
            run = RecurringRun.objects.using(using).create(recurring=recurring, scheduled_at=tick, task_id=0)
            run.task_id = enqueue_target(recurring)
            run.save(update_fields=["task_id"])
            RecurringTask.objects.using(using).filter(pk=recurring.pk).update(last_run_at=tick)
    except IntegrityError:
        return False  # another scheduler enqueued this tick
    logger.info("recurring task enqueued key=%s tick=%s task=%s", recurring.key, tick.isoformat(), run.task_id)
    return True


def run_now(recurring: RecurringTask) -> int:
    """Enqueue one run at once, outside the schedule (the admin's "Run now")."""
    return enqueue_target(recurring)
