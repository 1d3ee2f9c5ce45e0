"""The report's rows: which figure of which measurement each shows, in what unit, against what
target."""

from __future__ import annotations

from dataclasses import dataclass, field

from scripts.bench.common import POSTGRES, SQLITE
from scripts.bench.front_doors import OTHER_FRONT_DOORS, FrontDoor
from scripts.bench.plan import Plan

RATIO = "x"  # the unit of a figure that is a ratio of two others


@dataclass(frozen=True)
class Target:
    value: float
    at_least: bool  # the figure must be >= value (rates), else <= value (latencies)

    def cell(self, figure: float | None, unit: str) -> str:
        bound = f"{'>=' if self.at_least else '<='} {number(self.value, unit)}"
        if figure is None:
            return f"{bound}: no figure"
        met = figure >= self.value if self.at_least else figure <= self.value
        verdict = f"{bound}: {'MET' if met else 'MISSED'}"
        return verdict if unit == RATIO else f"{verdict} ({figure / self.value:.2f}x)"


WITHIN_20_PERCENT = Target(0.8, True)  # of the queue-class figure of the same run


@dataclass(frozen=True)
class Row:
    label: str
    key: str
    field: str
    unit: str
    targets: dict[str, Target] = field(default_factory=dict)
    summary: bool = True  # shown in the closing markdown table
    # a step: the figure divided by that step's, same field, run and database
    relative_to: str | None = None


def run_rows(plan: Plan) -> list[Row]:
    n = f"{plan.tasks:,}"
    return [
        Row(
            "Enqueue, add_task one per transaction (tasks/s)",
            "enqueue",
            "rate",
            "/s",
            {POSTGRES: Target(3_000, True)},
        ),
        *(
            Row(
                f"  {door.label}: {door.single_call} one per transaction (tasks/s)",
                f"enqueue-{door.kind}",
                "rate",
                "/s",
            )
            for door in OTHER_FRONT_DOORS
        ),
        Row(
            f"Enqueue, bulk add_tasks of {n} (tasks/s)",
            "bulk",
            "rate",
            "/s",
            {POSTGRES: Target(50_000, True)},
        ),
        Row(
            f"Drain {n}, 1 worker process (tasks/s)",
            "drain-1",
            "rate",
            "/s",
            {SQLITE: Target(20_000, True), POSTGRES: Target(10_000, True)},
        ),
        *(row for door in OTHER_FRONT_DOORS for row in front_door_drain_rows(door, n)),
        Row(f"Drain {n}, 2 worker processes (tasks/s)", "drain-2", "rate", "/s"),
        Row(f"Drain {n}, 1 worker, RESULT_RETENTION=0 (tasks/s)", "drain-1-r0", "rate", "/s"),
        Row(
            "  1 worker: first task started after commit (ms)",
            "drain-1",
            "first_pickup_ms",
            "ms",
            summary=False,
        ),
        Row(
            "  1 worker: first start to last finish (tasks/s)",
            "drain-1",
            "steady_rate",
            "/s",
            summary=False,
        ),
        Row(
            "  2 workers: first start to last finish (tasks/s)",
            "drain-2",
            "steady_rate",
            "/s",
            summary=False,
        ),
        Row(
            "  1 worker: its CPU while draining (% of a core)",
            "drain-1",
            "worker_cpu_percent",
            "%",
            summary=False,
        ),
        Row(
            "  1 worker: its CPU per task (us)",
            "drain-1",
            "worker_cpu_us_per_task",
            "us",
            summary=False,
        ),
        Row(
            "  2 workers: their CPU while draining (% of a core)",
            "drain-2",
            "worker_cpu_percent",
            "%",
            summary=False,
        ),
        Row(
            "Pickup latency of an idle worker, p50 (ms)",
            "pickup",
            "p50_ms",
            "ms",
            {POSTGRES: Target(5, False)},
        ),
        Row(
            "Pickup latency of an idle worker, p99 (ms)",
            "pickup",
            "p99_ms",
            "ms",
            {POSTGRES: Target(20, False)},
        ),
        Row("  pickup samples per run", "pickup", "samples", "n", summary=False),
    ]


def front_door_drain_rows(door: FrontDoor, n: str) -> list[Row]:
    """A front door's one-worker drain, and its ratios to the queue classes' drain of the same
    run."""
    key = f"drain-1-{door.kind}"
    within = {SQLITE: WITHIN_20_PERCENT, POSTGRES: WITHIN_20_PERCENT}
    return [
        Row(f"Drain {n}, 1 worker process, {door.label} (tasks/s)", key, "rate", "/s"),
        Row(
            f"  {door.label} / queue classes, same run (ratio)",
            key,
            "rate",
            RATIO,
            within,
            relative_to="drain-1",
        ),
        Row(
            f"  {door.label} / queue classes, first start to last finish",
            key,
            "steady_rate",
            RATIO,
            summary=False,
            relative_to="drain-1",
        ),
        Row(
            f"  {door.label}: the worker's CPU per task (us)",
            key,
            "worker_cpu_us_per_task",
            "us",
            summary=False,
        ),
    ]


def once_rows(plan: Plan) -> list[Row]:
    n = f"{plan.memory_tasks:,}"
    return [
        Row(f"Drain {n} (memory run), 1 worker (tasks/s)", "memory", "rate", "/s"),
        Row(
            "  its CPU while draining (% of a core)",
            "memory",
            "worker_cpu_percent",
            "%",
            summary=False,
        ),
        Row("Worker RSS idle, just started (MiB)", "memory", "idle_mib", "MiB", summary=False),
        Row(
            f"Worker RSS after {plan.warmup_tasks:,}-task warm-up (MiB)",
            "memory",
            "warm_mib",
            "MiB",
        ),
        Row(f"Worker RSS peak during {n} tasks (MiB)", "memory", "peak_mib", "MiB", summary=False),
        Row(f"Worker RSS after {n} tasks (MiB)", "memory", "after_mib", "MiB"),
        Row("Worker RSS growth, warm-up to end (MiB)", "memory", "growth_mib", "MiB"),
        Row(
            "Idle worker: transactions/s (PostgreSQL's pg_stat_database)",
            "idle",
            "xact_per_second",
            "/s",
        ),
        Row("Idle worker: CPU (% of one core)", "idle", "cpu_percent", "%"),
    ]


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == RATIO:
        return f"{value:.2f}"
    return f"{value:,.0f}" if unit == "n" or abs(value) >= 100 else f"{value:.1f}"
