"""The plan: how many runs and tasks, and which measurements run, in which order, with what
timeouts."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from scripts.bench.common import drain_timeout
from scripts.bench.front_doors import OTHER_FRONT_DOORS

# The measurements a Step may name (see measurements.MEASUREMENTS, on the child side).
MEASUREMENT_NAMES = ("enqueue", "bulk", "drain", "pickup", "memory", "idle")


@dataclass(frozen=True)
class Plan:
    runs: int
    tasks: int  # per drain and per bulk enqueue
    single_enqueues: int
    single_budget: float
    pickup_samples: int
    pickup_budget: float
    memory_tasks: int
    warmup_tasks: int
    idle_seconds: float
    quick: bool


@dataclass(frozen=True)
class Step:
    key: str
    measurement: str
    params: dict[str, Any]
    timeout: float


def make_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    return Plan(
        runs=args.runs or (1 if quick else 3),
        tasks=args.tasks or (5_000 if quick else 20_000),
        single_enqueues=500 if quick else 3_000,
        single_budget=5.0,
        pickup_samples=50 if quick else 200,
        pickup_budget=8.0 if quick else 25.0,
        memory_tasks=20_000 if quick else 100_000,
        warmup_tasks=2_000,
        idle_seconds=5.0 if quick else 10.0,
        quick=quick,
    )


def run_steps(plan: Plan, run: int) -> list[Step]:
    """The measurements of run number `run` (from 0). The one-worker drains of the three front doors
    run back to back, in an order rotated from run to run, so that the ratios between them compare
    like with like and no front door always comes first."""
    drain = drain_timeout(plan.tasks) + 90
    single = {"count": plan.single_enqueues, "budget": plan.single_budget}
    one_worker = [
        Step("drain-1", "drain", {"tasks": plan.tasks, "workers": 1}, drain),
        *(
            Step(
                f"drain-1-{door.kind}",
                "drain",
                {"tasks": plan.tasks, "workers": 1, "front": door.kind},
                drain,
            )
            for door in OTHER_FRONT_DOORS
        ),
    ]
    turn = run % len(one_worker)
    return [
        Step("enqueue", "enqueue", single, 120),
        *(
            Step(f"enqueue-{door.kind}", "enqueue", single | {"front": door.kind}, 120)
            for door in OTHER_FRONT_DOORS
        ),
        Step("bulk", "bulk", {"tasks": plan.tasks}, 120),
        *one_worker[turn:],
        *one_worker[:turn],
        Step("drain-2", "drain", {"tasks": plan.tasks, "workers": 2}, drain),
        Step("drain-1-r0", "drain", {"tasks": plan.tasks, "workers": 1, "retention": False}, drain),
        Step(
            "pickup",
            "pickup",
            {"samples": plan.pickup_samples, "budget": plan.pickup_budget},
            plan.pickup_budget + 90,
        ),
    ]


def schedule(plan: Plan) -> list[tuple[str, Step]]:
    """What runs, in order: idle cost first, on fresh databases, then the runs, then the memory run.

    Background work (autovacuum after heavy writes) would count as the idle worker's transactions.
    """
    memory = {"tasks": plan.memory_tasks, "warmup": plan.warmup_tasks}
    idle = Step("idle", "idle", {"seconds": plan.idle_seconds}, 2 * plan.idle_seconds + 90)
    runs = [
        (f"run {run + 1}/{plan.runs}", step)
        for run in range(plan.runs)
        for step in run_steps(plan, run)
    ]
    memory_step = Step(
        "memory", "memory", memory, drain_timeout(plan.memory_tasks + plan.warmup_tasks) + 120
    )
    return [("once", idle), *runs, ("once", memory_step)]
