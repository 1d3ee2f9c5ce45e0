"""The numbers of the queue dashboard, gathered in a few aggregate queries.

    from taskqueue.dashboard import snapshot

    board = snapshot(timezone.now())
    board.queues[0].counts["failed"], board.succeeded.total, board.workers, board.failures

The task table can hold millions of rows, so every query is bounded by an index of `Task.Meta`:
counts per state group and queue (the admin's groups), tasks finished in the last hour bucketed
per minute, and the latest failures. Nothing here reads the whole history of finished tasks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import router
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncMinute
from django.utils import timezone

from taskqueue.conf import load_settings
from taskqueue.control import QueueInfo
from taskqueue.engine.liveness import Recovery
from taskqueue.models import PausedQueue, Status, Task, WorkerProcess

RECENT = timedelta(hours=24)
MINUTES = 60  # the charts' window
LATEST_FAILURES = 10
# The charts' drawing units: a bar and its gap per minute, scaled to the busiest minute.
CHART_WIDTH = 600
CHART_HEIGHT = 100
MIN_BAR = 2  # so that a single task still shows beside a busy minute
EMPTY = (0,) * MINUTES


def state_filters(now: datetime) -> dict[str, tuple[str, Q]]:
    """The groups an operator thinks in, for the admin's filter and the dashboard alike; each is
    served by an index.

    Two are spelled for PostgreSQL's planner, which otherwise scans the whole table for them:
    abandoned as an OR of two statuses (one partial index each), blocked with the key every blocked
    task has.
    """
    ready_or_failed = Q(status=Status.READY) | Q(status=Status.FAILED)
    return {
        "failed": ("Failed", Q(status=Status.FAILED)),
        "abandoned": ("Abandoned (worker died)", Q(abandoned=True) & ready_or_failed),
        "running": ("Running", Q(status=Status.RUNNING)),
        "ready": ("Ready", Q(status=Status.READY, run_at__lte=now)),
        "scheduled": ("Scheduled (future)", Q(status=Status.READY, run_at__gt=now)),
        "blocked": (
            "Blocked (concurrency limit)",
            Q(status=Status.BLOCKED, concurrency_key__isnull=False),
        ),
        "succeeded": (
            "Succeeded (24 h)",
            Q(status=Status.SUCCEEDED, finished_at__gte=now - RECENT),
        ),
        "cancelled": ("Cancelled", Q(status=Status.CANCELLED)),
    }


def error_line(task: Task) -> str:
    """The last error of a task in one line: exception class (without its module) and message."""
    error = task.last_error
    if not error:
        return ""
    return f"{error['exc_class'].rsplit('.', 1)[-1]}: {error['message'][:120]}"


def duration(delta: timedelta) -> str:
    """A duration as read at a glance: its largest unit and the next one ("3 min 12 s",
    "2 d 5 h")."""
    seconds = max(int(delta.total_seconds()), 0)
    units = [("d", 86400), ("h", 3600), ("min", 60), ("s", 1)]
    while len(units) > 1 and seconds < units[0][1]:
        units.pop(0)
    (unit, size), *smaller = units
    text = f"{seconds // size} {unit}"
    if smaller and (rest := seconds % size // smaller[0][1]):
        text += f" {rest} {smaller[0][0]}"
    return text


@dataclass(frozen=True)
class Bar:
    """One minute of a chart, in the chart's drawing units."""

    minute: datetime
    count: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Chart:
    """Tasks finished per minute over the last hour, oldest minute first."""

    outcome: str  # "succeeded" or "failed"
    start: datetime
    counts: tuple[int, ...]

    width = CHART_WIDTH
    height = CHART_HEIGHT

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def peak(self) -> int:
        return max(self.counts, default=0)

    def minute(self, index: int) -> datetime:
        return self.start + timedelta(minutes=index)

    @property
    def bars(self) -> list[Bar]:
        """The minutes with tasks (an empty minute draws nothing)."""
        step = self.width / len(self.counts)
        bars = []
        for index, count in enumerate(self.counts):
            if count:
                height = max(self.height * count / self.peak, MIN_BAR)
                x, width, y = (
                    round(index * step, 2),
                    round(step * 0.8, 2),
                    round(self.height - height, 2),
                )
                bars.append(Bar(self.minute(index), count, x, y, width, round(height, 2)))
        return bars

    @property
    def summary(self) -> str:
        """The chart in words, for its accessible name."""
        text = f"{self.total} {self.outcome} in the last {len(self.counts)} minutes"
        if not self.total:
            return text + "."
        busiest = timezone.localtime(self.minute(self.counts.index(self.peak)))
        return f"{text}; at most {self.peak} in one minute, at {busiest:%H:%M}."


@dataclass(frozen=True)
class StateCount:
    key: str  # the admin's `state` filter value
    label: str
    count: int


@dataclass(frozen=True)
class QueueSnapshot:
    name: str
    states: tuple[StateCount, ...]  # in the order of `state_filters`
    latency: timedelta  # how long the oldest due task has waited
    paused: bool
    succeeded: Chart
    failed: Chart

    @property
    def counts(self) -> dict[str, int]:
        return {state.key: state.count for state in self.states}

    @property
    def latency_text(self) -> str:
        return duration(self.latency)


@dataclass(frozen=True)
class WorkerSnapshot:
    process: WorkerProcess
    heartbeat_age: timedelta
    late: bool  # silent longer than the engine's grace: busy, or dead and not yet found out
    presumed_dead: bool  # silent past WORKER_DEAD_AFTER: the next sweep removes it

    @property
    def heartbeat_age_text(self) -> str:
        return duration(self.heartbeat_age)

    @property
    def health(self) -> str:
        return "presumed dead" if self.presumed_dead else "late" if self.late else "alive"


@dataclass(frozen=True)
class Failure:
    task: Task
    error: str


@dataclass(frozen=True)
class Minute:
    at: datetime
    succeeded: int
    failed: int


@dataclass(frozen=True)
class Dashboard:
    now: datetime
    queues: tuple[QueueSnapshot, ...]
    succeeded: Chart
    failed: Chart
    workers: tuple[WorkerSnapshot, ...]
    failures: tuple[Failure, ...]
    results_kept: (
        bool  # False with RESULT_RETENTION = 0: successes are deleted at once, so never counted
    )

    @property
    def workers_alive(self) -> int:
        return sum(not worker.late for worker in self.workers)

    @property
    def minutes(self) -> list[Minute]:
        """The minutes in which tasks finished: the numbers behind the charts, as text."""
        pairs = enumerate(zip(self.succeeded.counts, self.failed.counts, strict=True))
        return [
            Minute(self.succeeded.minute(i), ok, failed)
            for i, (ok, failed) in pairs
            if ok or failed
        ]


def snapshot(now: datetime) -> Dashboard:
    """Everything the dashboard shows, as of `now`, from the queue's database."""
    using = router.db_for_read(Task)
    tasks = Task.objects.using(using)
    engine = load_settings()
    counts = _counts(tasks, now)
    paused = set(PausedQueue.objects.using(using).values_list("name", flat=True))
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    per_minute = _per_minute(tasks, start)
    groups = state_filters(now)
    queues = []
    for name in sorted(counts.keys() | paused):
        queue_counts = counts.get(name, {})
        queues.append(
            QueueSnapshot(
                name=name,
                states=tuple(
                    StateCount(key, label, queue_counts.get(key, 0))
                    for key, (label, _) in groups.items()
                ),
                # One more query, and only for a queue with due tasks.
                latency=QueueInfo(name).latency if queue_counts.get("ready") else timedelta(0),
                paused=name in paused,
                succeeded=Chart(
                    "succeeded", start, per_minute.get((name, Status.SUCCEEDED), EMPTY)
                ),
                failed=Chart("failed", start, per_minute.get((name, Status.FAILED), EMPTY)),
            )
        )
    return Dashboard(
        now=now,
        queues=tuple(queues),
        succeeded=Chart("succeeded", start, _sum(queue.succeeded.counts for queue in queues)),
        failed=Chart("failed", start, _sum(queue.failed.counts for queue in queues)),
        workers=tuple(_workers(using, now, engine.HEARTBEAT_INTERVAL, engine.WORKER_DEAD_AFTER)),
        failures=tuple(_failures(tasks)),
        results_kept=engine.RESULT_RETENTION > 0,
    )


def _counts(tasks: QuerySet[Task], now: datetime) -> dict[str, dict[str, int]]:
    """Tasks per queue and state group: one grouped query per group, as the admin counts them, so
    each keeps its index (a single query OR-ing the groups would scan the table on PostgreSQL)."""
    counts: dict[str, dict[str, int]] = {}
    for key, (_, condition) in state_filters(now).items():
        for row in tasks.filter(condition).values("queue_name").annotate(n=Count("pk")).order_by():
            counts.setdefault(row["queue_name"], {})[key] = row["n"]
    return counts


def _per_minute(tasks: QuerySet[Task], start: datetime) -> dict[tuple[str, str], tuple[int, ...]]:
    """Tasks that succeeded or failed for good, per queue, outcome and minute since `start` (the
    finished index)."""
    rows = (
        tasks.filter(status__in=[Status.SUCCEEDED, Status.FAILED], finished_at__gte=start)
        .annotate(minute=TruncMinute("finished_at", tzinfo=UTC))
        .values("queue_name", "status", "minute")
        .annotate(n=Count("pk"))
        .order_by()
    )
    buckets: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        index = int((row["minute"] - start).total_seconds() // 60)
        if (
            0 <= index < MINUTES
        ):  # not a task finished after `now` (a snapshot of the past, another host's clock)
            buckets.setdefault((row["queue_name"], row["status"]), [0] * MINUTES)[index] += row["n"]
    return {key: tuple(counts) for key, counts in buckets.items()}


def _workers(
    using: str, now: datetime, heartbeat_interval: float, dead_after: float
) -> list[WorkerSnapshot]:
    snapshots = []
    for process in WorkerProcess.objects.using(using).order_by("hostname", "name", "pid"):
        # The engine's own judgement of silence, so "late" here means what it means to the workers.
        liveness = Recovery(using, process.pk, heartbeat_interval, dead_after)
        age = max(now - process.heartbeat_at, timedelta(0))
        snapshots.append(
            WorkerSnapshot(process, age, age > liveness.grace, age > timedelta(seconds=dead_after))
        )
    return snapshots


def _failures(tasks: QuerySet[Task]) -> list[Failure]:
    latest = (
        tasks.filter(status=Status.FAILED)
        .order_by("-finished_at", "-pk")
        .only("pk", "queue_name", "task_path", "finished_at", "abandoned", "errors")[
            :LATEST_FAILURES
        ]
    )
    return [Failure(task, error_line(task)) for task in latest]


def _sum(series: Iterable[tuple[int, ...]]) -> tuple[int, ...]:
    return tuple(sum(minute) for minute in zip(*series, strict=True)) or EMPTY
