"""The printed report: the machine and databases, notes, the table, per-run values, problems, and a
closing markdown summary for the README."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator

from scripts.bench.common import POSTGRES, SQLITE
from scripts.bench.databases import Database
from scripts.bench.plan import Plan
from scripts.bench.results import Results
from scripts.bench.table import RATIO, Row, number, once_rows, run_rows

MAX_PROBLEMS_SHOWN = 40


def table_cells(row: Row, results: Results) -> list[str]:
    """Label, SQLite, PostgreSQL, PG/SQLite, SQLite target, PostgreSQL target."""
    sqlite, pg = (results.median(database, row) for database in (SQLITE, POSTGRES))
    comparable = (
        sqlite is not None
        and pg is not None
        and sqlite > 0
        and pg > 0
        and row.unit not in ("n", RATIO)
    )
    ratio = f"{pg / sqlite:.3g}x" if comparable else "-"
    targets = [
        row.targets[database].cell(results.median(database, row), row.unit)
        if database in row.targets
        else ""
        for database in (SQLITE, POSTGRES)
    ]
    return [row.label, number(sqlite, row.unit), number(pg, row.unit), ratio, *targets]


def render_text(headers: list[str], cells: list[list[str]]) -> str:
    widths = [
        max(len(line[column]) for line in [headers, *cells]) for column in range(len(headers))
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            value.ljust(width) if column in (0, 4, 5) else value.rjust(width)
            for column, (value, width) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]), *map(line, cells)])


def render_markdown(headers: list[str], cells: list[list[str]]) -> str:
    align = ["---" if column in (0, 4, 5) else "---:" for column in range(len(headers))]
    return "\n".join(
        f"| {' | '.join(value.strip() for value in values)} |"
        for values in [headers, align, *cells]
    )


def per_run_lines(rows: list[Row], results: Results, databases: list[Database]) -> Iterator[str]:
    for row in rows:
        parts = [
            f"{database.label} "
            f"{' / '.join(number(v, row.unit) for v in results.values(database.label, row))}"
            for database in databases
        ]
        yield f"  {row.label.strip()}: {'; '.join(parts)}"


NOTES = (
    "  Medians of {runs} run(s). Workers: manage.py taskqueue_worker --threads 1, "
    "LOG_LEVEL=WARNING, default\n"
    "  TASKQUEUE settings (1 s idle poll, RESULT_RETENTION 86400: successes kept as rows). Every "
    "measurement\n"
    "  starts on emptied tables. Drains: workers idle first, then one bulk insert at a random "
    "point of their\n"
    "  poll cycle; timed from its commit to the first 50 ms poll finding no task ready or running, "
    "so the\n"
    '  first pickup is included (see "first task started"). RESULT_RETENTION=0: the same command '
    "run through\n"
    "  call_command with settings.TASKQUEUE set in-process. Pickup latency: add_task() returned "
    "(committed)\n"
    '  -> process() started. Ratios: PostgreSQL/SQLite, and figure/target. A negative "first task '
    'started"\n'
    "  means the worker stamped its claim before waiting for SQLite's write lock, held by the "
    "insert.\n"
    "  Front doors: drains not labelled otherwise are of queue-class (BaseQueue) no-op tasks. The "
    "django.tasks\n"
    "  and Celery-style drains are measured the same way, back to back with the queue classes' "
    "drain in each\n"
    "  run (in an order rotated from run to run), with the same worker command. Their bulk "
    "inserts: the\n"
    "  backend's enqueue_all(); for the Celery-style API (no bulk call) the engine's "
    "enqueue_many(), storing\n"
    "  what delay() stores. Their ratios (figure / queue-class figure, same run and database; "
    "medians of the\n"
    "  per-run ratios) must be >= 0.80: within 20% of the queue classes. On SQLite, where only "
    "polling wakes\n"
    "  a worker, each drain's first pickup (0-1 s) weighs on its figure and so on the ratio; the "
    '"first start\n'
    '  to last finish" ratio leaves it out. Single enqueues through the front doors are '
    "informational. CPU\n"
    "  per task: the worker process's user+system time over the drain / tasks.\n"
)


def report(
    plan: Plan, databases: list[Database], notes: list[str], results: Results, seconds: float
) -> None:
    headers = [
        "Measurement",
        SQLITE,
        POSTGRES,
        "PG/SQLite",
        f"{SQLITE} target",
        f"{POSTGRES} target",
    ]
    main_rows, single_rows = run_rows(plan), once_rows(plan)
    print("\nTask queue benchmark" + (" (--quick)" if plan.quick else ""))
    print(f"  {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    for database in databases:
        print(f"  {database.description}")
    for note in notes:
        print(f"  NOTE: {note}")
    print(NOTES.format(runs=plan.runs))
    print(render_text(headers, [table_cells(row, results) for row in main_rows]))
    print(
        f"\nSingle runs ({plan.memory_tasks:,}-task memory run, {plan.idle_seconds:.0f} s idle "
        "window):\n"
    )
    print(render_text(headers[:4], [table_cells(row, results)[:4] for row in single_rows]))
    print("\nPer-run values:")
    print("\n".join(per_run_lines(main_rows, results, databases)))
    print("\nProblems observed (worker logs at WARNING and above, exit codes, task outcomes):")
    shown = results.problems[:MAX_PROBLEMS_SHOWN]
    print("\n".join(f"  - {problem}" for problem in shown) or "  none")
    if len(results.problems) > len(shown):
        print(f"  ... and {len(results.problems) - len(shown)} more")
    minutes, rest = divmod(round(seconds), 60)
    print(f"\nTotal time: {minutes} min {rest} s\n")
    print(f"Summary (medians of {plan.runs} run(s), {os.cpu_count()} CPUs):\n")
    summary = [table_cells(row, results) for row in [*main_rows, *single_rows] if row.summary]
    print(render_markdown(headers, summary))
