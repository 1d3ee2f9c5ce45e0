"""Recurring tasks: cron schedules with time zones, enqueued exactly once per tick.

    from taskqueue.recurring import schedule_recurring, unschedule_recurring

    schedule_recurring("nightly-report", "apps.reports.tasks.nightly", "0 3 * * *",
                       timezone="Europe/Riga")
    unschedule_recurring("nightly-report")

Static schedules come from TASKQUEUE["RECURRING"] = {key: {"task_path": ..., "schedule": ...}}.

Any number of worker processes may run the scheduler: a tick is enqueued by whichever moves the
schedule's `last_run_at` to it first (an update conditioned on the stored value), so exactly once.
Ticks missed while no scheduler ran are not replayed: a scheduler enqueues the latest tick that is
due, once (so after a night down, an hourly task runs once, not eight times), plus any tick missed
within the last few seconds (a busy moment), and never a tick from before the schedule existed.

Each schedule fails alone: one whose task cannot be imported or enqueued, or whose date never comes,
has the error stored on its row (`last_error`, cleared by its next enqueued tick) and logged, with
its traceback once per distinct error; the other schedules run on time.

Daylight saving follows classic cron (Vixie cron, cronie). A schedule whose minute and hour fields
both name values (`30 3 * * *`, `0 9-17 * * 1-5`) fixes wall-clock times: a time the fall-back
repeats runs at its first occurrence only, and a time the spring-forward skips runs once, at the
moment after the gap. A schedule whose minute or hour field starts with `*` (`*/5 * * * *`,
`0 * * * *`) is an interval: it runs at every real occurrence, twice in a repeated hour, and not in
the skipped one (there are no ticks in it).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from django.db import IntegrityError, InterfaceError, OperationalError, router, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from taskqueue.engine import executors, registry
from taskqueue.exceptions import TaskQueueError, UndeclaredTask
from taskqueue.models import RecurringRun, RecurringTask

logger = logging.getLogger("taskqueue.recurring")
# Ticks missed by less than this (schedulers busy or slow for a moment) are each still enqueued;
# older ones were missed while no scheduler ran, and are not replayed.
CATCH_UP = timedelta(seconds=5)
FIELDS = (
    "task_path",
    "schedule",
    "timezone",
    "args",
    "kwargs",
    "queue_name",
    "priority",
    "description",
)
# Run rows older than this are deleted (by the scheduler, PRUNE_BATCH at a time). Exactly-once rests
# on `last_run_at` (see run_tick), so runs are history for people, kept a day.
RUN_RETENTION = timedelta(days=1)
PRUNE_BATCH = 1000


@dataclass(frozen=True)
class Schedule:
    cron: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, cron: str, zone: str) -> Schedule:
        """The schedule, or TaskQueueError if it could never run (bad cron, unknown zone, no such
        date)."""
        if not croniter.is_valid(cron):
            raise TaskQueueError(
                f"{cron!r} is not a cron schedule (5 fields, or 6 with seconds last)."
            )
        try:
            schedule = cls(cron, ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise TaskQueueError(
                f"{zone!r} is not a time zone name (such as 'UTC' or 'Europe/Riga')."
            ) from None
        schedule.next_tick(timezone.now())  # `0 0 31 2 *` is valid cron, yet never comes
        return schedule

    @cached_property
    def fixes_wall_times(self) -> bool:
        """True for `30 3 * * *`, False for intervals such as `*/5 * * * *` or `0 * * * *` (see the
        module's docstring): the cron rule for daylight saving tells them apart the same way."""
        minute, hour = croniter(self.cron).expressions[:2]  # aliases such as @daily expanded
        return not (minute.startswith("*") or hour.startswith("*"))

    def latest_tick(self, now: datetime) -> datetime:
        """The last tick at or before `now`, in UTC."""
        tick = self.previous_tick(now)
        following = self.next_tick(tick)
        return following if following <= now else tick

    def previous_tick(self, tick: datetime) -> datetime:
        """The tick before `tick`, in UTC."""
        return self._first(tick, forward=False)

    def next_tick(self, now: datetime) -> datetime:
        """The first tick after `now`, in UTC."""
        return self._first(now, forward=True)

    def _first(self, start: datetime, forward: bool) -> datetime:
        """croniter's first tick after (or before) `start` that the daylight-saving rule keeps."""
        try:
            ticks = croniter(self.cron, start.astimezone(self.zone))
            step = ticks.get_next if forward else ticks.get_prev
            tick = step(datetime)
            while not self._keeps(tick):
                tick = step(datetime)
        except CroniterError:
            raise TaskQueueError(
                f"{self.cron!r} never comes: no date matches it (such as 31 February)."
            ) from None
        return tick.astimezone(UTC)

    def _keeps(self, tick: datetime) -> bool:
        """Whether croniter's `tick` is one of this schedule's by the cron rule. croniter gives a
        fixed time at both occurrences of a repeated hour (the second is dropped), and a time the
        spring-forward skipped at the moment after the gap (kept for a fixed time, dropped for an
        interval)."""
        local = tick.astimezone(self.zone)
        if self.fixes_wall_times:
            return not _second_occurrence(local)
        return not _just_after_gap(local) or croniter.match(self.cron, local.replace(tzinfo=None))


def _second_occurrence(local: datetime) -> bool:
    """A wall-clock time the fall-back repeats, the second time (the same time had a larger
    offset)."""
    return _offset(local.replace(fold=0)) > _offset(local)


def _just_after_gap(local: datetime) -> bool:
    """The first moment after a spring-forward gap (the second before it had a smaller offset)."""
    return _offset(
        (local.astimezone(UTC) - timedelta(seconds=1)).astimezone(local.tzinfo)
    ) < _offset(local)


def _offset(moment: datetime) -> timedelta:
    """The UTC offset of an aware time (zero for a naive one, which the schedules never hold)."""
    return moment.utcoffset() or timedelta(0)


def validate(values: dict[str, Any]) -> None:
    """Refuse a schedule that could never run: bad cron, zone or date, task path or arguments."""
    Schedule.parse(values["schedule"], values.get("timezone") or "UTC")
    front_door(values["task_path"])
    if not isinstance(values.get("args", []), list) or not isinstance(
        values.get("kwargs", {}), dict
    ):
        raise TaskQueueError("args must be a list and kwargs a dict.")


def schedule_recurring(key: str, task_path: str, schedule: str, **options: Any) -> RecurringTask:
    """Create or change a dynamic recurring task. Options: timezone, args, kwargs, queue_name,
    priority, description, enabled."""
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
    deleted, _ = (
        RecurringTask.objects.using(router.db_for_write(RecurringTask)).filter(key=key).delete()
    )
    return bool(deleted)


def sync_static(definitions: dict[str, dict[str, Any]]) -> set[str]:
    """Make the static recurring tasks those of the settings: add, change, remove. Returns the keys
    of the definitions that are invalid.

    Each definition alone: an invalid one is logged, and its row, if it has one from an earlier
    sync, keeps its error and is not run (see run_due's `skip`) until the settings are fixed; the
    others sync.
    """
    using = router.db_for_write(RecurringTask)
    invalid = set()
    for key, definition in definitions.items():
        try:
            sync_one(key, definition)
        except Exception as error:
            if database_away(error):
                raise
            logger.error("recurring task %r in settings is invalid, not synced: %s", key, error)
            record_error(
                RecurringTask.objects.using(using).filter(key=key),
                f"Not synced from settings: {error}",
            )
            invalid.add(key)
    RecurringTask.objects.using(using).filter(static=True).exclude(
        key__in=list(definitions)
    ).delete()
    return invalid


def sync_one(key: str, definition: dict[str, Any]) -> None:
    """Create or update the row of one static definition (a fixed definition clears the row's
    error)."""
    values = {field: definition[field] for field in FIELDS if field in definition}
    validate(values)
    values |= {"static": True, "last_error": "", "last_error_at": None}
    RecurringTask.objects.using(router.db_for_write(RecurringTask)).update_or_create(
        key=key, defaults=values, create_defaults={**values, "created_at": timezone.now()}
    )


def front_door(task_path: str) -> tuple[executors.FrontDoor, Any]:
    """The front door of a declared task, and the task; raises UndeclaredTask for any other path."""
    target = registry.resolve(task_path)
    declaration = registry.declared(task_path)
    door = declaration and executors.door_for(declaration.kind)
    if not door:
        raise UndeclaredTask(f"{task_path} is declared by a front door that is not loaded.")
    return door, target


def enqueue_target(recurring: RecurringTask) -> int:
    """Enqueue one run through the task's own front door; returns the task id."""
    door, target = front_door(recurring.task_path)
    run = executors.Scheduled(
        args=list(recurring.args),
        kwargs=dict(recurring.kwargs),
        queue_name=recurring.queue_name or None,
        priority=recurring.priority,
        note=f"recurring {recurring.key}",
    )
    return door.enqueue(target, run)


def due_ticks(
    recurring: RecurringTask, schedule: Schedule, now: datetime, catch_up: timedelta
) -> list[datetime]:
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


def run_due(
    now: datetime | None = None, catch_up: timedelta = CATCH_UP, skip: Collection[str] = ()
) -> int:
    """Enqueue every enabled recurring task's due ticks not yet run, but those of the keys in
    `skip`. Returns how many were enqueued.

    A schedule that fails (its task's module gone after a deploy, a date that never comes) fails
    alone: its error is recorded and the next schedule runs. Only the database going away ends the
    pass, for the scheduler to back off.
    """
    now = now or timezone.now()
    using = router.db_for_write(RecurringTask)
    enqueued = 0
    for recurring in (
        RecurringTask.objects.using(using).filter(enabled=True).exclude(key__in=list(skip))
    ):
        try:
            enqueued += run_schedule(recurring, now, catch_up)
        except Exception as error:
            if database_away(error):
                raise
            schedule_failed(recurring, error)
    return enqueued


def run_schedule(recurring: RecurringTask, now: datetime, catch_up: timedelta) -> int:
    """Enqueue one recurring task's due ticks; returns how many this scheduler enqueued."""
    schedule = Schedule.parse(recurring.schedule, recurring.timezone)
    return sum(run_tick(recurring, tick) for tick in due_ticks(recurring, schedule, now, catch_up))


def run_tick(recurring: RecurringTask, tick: datetime) -> bool:
    """Enqueue `recurring` for `tick` unless another scheduler already has. True if this one did.

    The schedule's row is the fence: `last_run_at` only moves forward, by an update conditioned on
    its stored value, so of the schedulers racing for a tick one enqueues it, and none enqueues a
    tick at or before the latest one run, however stale its view of the row. The run row's unique
    constraint is a second line, so run rows can be pruned.
    """
    using = router.db_for_write(RecurringTask)
    not_yet_run = Q(last_run_at__isnull=True) | Q(last_run_at__lt=tick)
    try:
        with transaction.atomic(using=using):
            # Taking the tick also clears the error of earlier ticks: this one goes through, or
            # rolls back.
            taken = RecurringTask.objects.using(using).filter(not_yet_run, pk=recurring.pk)
            if not taken.update(last_run_at=tick, last_error="", last_error_at=None):
                return False
            run = RecurringRun.objects.using(using).create(
                recurring=recurring, scheduled_at=tick, task_id=0
            )
            run.task_id = enqueue_target(recurring)
            run.save(update_fields=["task_id"])
    except IntegrityError:
        return False  # another scheduler enqueued this tick
    logger.info(
        "recurring task enqueued key=%s tick=%s task=%s",
        recurring.key,
        tick.isoformat(),
        run.task_id,
    )
    return True


def schedule_failed(recurring: RecurringTask, error: Exception) -> None:
    """Log a schedule's error and store it on its row. The traceback is logged when the error is new
    to the row, not at every pass while the same error lasts (whichever scheduler stored it
    first)."""
    message = describe(error)
    if message == recurring.last_error:
        logger.debug("recurring task %s still failing: %s", recurring.key, message)
        return
    logger.error(
        "recurring task %s failed (other schedules go on): %s",
        recurring.key,
        message,
        exc_info=error,
    )
    record_error(
        RecurringTask.objects.using(router.db_for_write(RecurringTask)).filter(pk=recurring.pk),
        message,
    )


def record_error(rows: QuerySet[RecurringTask], message: str) -> None:
    rows.update(last_error=message, last_error_at=timezone.now())


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def database_away(error: BaseException) -> bool:
    """An error of the connection, not of the schedule at hand (the other errors of a database, such
    as a constraint or a bad value, are that schedule's own)."""
    return isinstance(error, OperationalError | InterfaceError)


def prune_runs(
    now: datetime | None = None, retention: timedelta = RUN_RETENTION, batch: int = PRUNE_BATCH
) -> int:
    """Delete at most `batch` runs whose tick is older than `retention`; returns how many went.
    Schedule by schedule, so each query is served by the (recurring, scheduled_at) unique index."""
    using = router.db_for_write(RecurringRun)
    cutoff = (now or timezone.now()) - retention
    deleted = 0
    for recurring_id in RecurringTask.objects.using(using).values_list("pk", flat=True):
        old = RecurringRun.objects.using(using).filter(
            recurring_id=recurring_id, scheduled_at__lt=cutoff
        )
        ids = list(old.values_list("pk", flat=True)[: batch - deleted])
        if ids:
            deleted += RecurringRun.objects.using(using).filter(pk__in=ids).delete()[0]
        if deleted >= batch:
            break
    return deleted


def run_now(recurring: RecurringTask) -> int:
    """Enqueue one run at once, outside the schedule (the admin's "Run now")."""
    return enqueue_target(recurring)
