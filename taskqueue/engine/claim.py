"""Taking ready tasks: a batch per query, in selector order, then priority, run time, enqueue order.

A claim marks tasks `running` for this worker process and counts the claim (`claims`, the token
every later write of this claim is fenced on); it does not start them. Each task is started, and its
attempt counted, by its own write just before it runs (see `outcomes.Recorder.begin`), so a task
claimed in a batch but never started is never charged for a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from taskqueue.engine import databases
from taskqueue.engine.databases.base import CLAIMED_COLUMNS, QUEUE_FILTERS
from taskqueue.serialization import error_entries


@dataclass(slots=True)
class ClaimedTask:
    id: int
    kind: str
    task_path: str
    queue_name: str
    payload: dict[str, Any]
    note: str
    priority: int
    attempts: int  # counting this one, once started
    max_attempts: int
    errors: list[dict[str, Any]]
    # As the database returned them (SQLite: text); read through `times()`, which few tasks need.
    raw_enqueued_at: Any = None
    raw_started_at: Any = None
    # For the order within a batch (the claim's order): comparable as returned, text on SQLite.
    raw_run_at: Any = None
    concurrency_key: str | None = None
    # This claim's token: the task's `claims` count as this claim set it.
    claims: int = 0
    # Why the stored row cannot be run (a payload Python cannot decode): the task fails with it.
    problem: str | None = None
    # The stored `errors` column was not a list of entries and `errors` holds its replacement, which
    # the start writes, so every later reader (admin, result objects) sees a well-formed history.
    errors_replaced: bool = False

    def times(self) -> tuple[datetime, datetime]:
        """When the task was enqueued and when this attempt started."""
        return as_datetime(self.raw_enqueued_at), as_datetime(self.raw_started_at)


@dataclass(frozen=True, slots=True)
class Selector:
    """One entry of a worker's queue list: `*`, an exact queue name, or a prefix ending in `*`."""

    text: str

    @property
    def filter(self) -> tuple[str, dict[str, str]]:
        if self.text == "*":
            return QUEUE_FILTERS["all"], {}
        if self.text.endswith("*"):
            prefix = self.text[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return QUEUE_FILTERS["prefix"], {"queue": prefix + "%"}
        return QUEUE_FILTERS["exact"], {"queue": self.text}

    def matches(self, queue_name: str) -> bool:
        """What `filter` selects, for one queue name in Python."""
        if self.text.endswith("*"):
            return queue_name.startswith(self.text[:-1])
        return queue_name == self.text


def as_datetime(value: Any) -> datetime:
    """A stored time as an aware datetime (SQLite hands back naive UTC datetimes or text)."""
    parsed = value if isinstance(value, datetime) else parse_datetime(value)
    if parsed is None:
        raise ValueError(f"Not a stored time: {value!r}")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


def claimed_task(row: tuple[Any, ...]) -> ClaimedTask:
    """A claimed row as a ClaimedTask. Never raises: a payload Python cannot decode (an integer of
    more digits than `int()` accepts, nesting deeper than the recursion limit) becomes a task with a
    `problem`, which fails alone instead of taking its worker down; an `errors` column that is not a
    list of entries is replaced (see `error_entries`), and the task runs."""
    values = dict(zip(CLAIMED_COLUMNS, row, strict=True))
    problem = None
    try:
        payload = (
            json.loads(values["payload"])
            if isinstance(values["payload"], str | bytes)
            else values["payload"]
        )
        if not isinstance(payload, dict):
            raise ValueError(f"the payload is a {type(payload).__name__}, not an object")
    except (ValueError, RecursionError) as error:
        payload, problem = {}, f"The stored arguments cannot be decoded: {str(error)[:300]}"
    errors, errors_replaced = error_entries(values["errors"])
    values |= {"payload": payload, "errors": errors}
    return ClaimedTask(
        id=values["id"],
        kind=values["kind"],
        task_path=values["task_path"],
        queue_name=values["queue_name"],
        payload=payload,
        note=values["note"],
        priority=values["priority"],
        attempts=values["attempts"],
        max_attempts=values["max_attempts"],
        errors=errors,
        raw_enqueued_at=values["enqueued_at"],
        raw_run_at=values["run_at"],
        concurrency_key=values["concurrency_key"],
        claims=values["claims"],
        problem=problem,
        errors_replaced=errors_replaced,
    )


def claim_order(task: ClaimedTask) -> tuple[int, Any, int]:
    """CLAIM_ORDER (priority, run time, enqueue order) for the tasks of one claim."""
    return -task.priority, task.raw_run_at, task.id


class Claimer:
    """Claims for one worker process on one database; statements are built once and reused."""

    def __init__(self, using: str, worker_id: int, selectors: list[str]) -> None:
        self.using = using
        self.worker_id = worker_id
        self.database = databases.for_alias(using)
        self.statements = [
            (self.database.claim_sql(filter_sql), params)
            for filter_sql, params in (Selector(text).filter for text in dict.fromkeys(selectors))
        ]

    def claim(self, limit: int, now: datetime) -> list[ClaimedTask]:
        connection = connections[self.using]
        stamp = connection.ops.adapt_datetimefield_value(now)
        claimed: list[ClaimedTask] = []
        with self.database.write_turn(connection), connection.cursor() as cursor:
            for sql, filter_params in self.statements:
                wanted = limit - len(claimed)
                if wanted <= 0:
                    break
                cursor.execute(
                    sql, {**filter_params, "now": stamp, "limit": wanted, "worker": self.worker_id}
                )
                rows = [claimed_task(row) for row in cursor.fetchall()]
                rows.sort(key=claim_order)  # RETURNING keeps no order
                claimed.extend(rows)
        return claimed
