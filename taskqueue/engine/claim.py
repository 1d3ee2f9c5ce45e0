"""Taking ready tasks: a batch per query, in selector order, then priority, run time, enqueue order."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from taskqueue.engine.dialect import QUEUE_FILTERS, Dialect


@dataclass(slots=True)
class ClaimedTask:
    id: int
    kind: str
    task_path: str
    queue_name: str
    payload: dict[str, Any]
    note: str
    priority: int
    attempts: int  # counting this one
    max_attempts: int
    errors: list[dict[str, Any]]
    # As the database returned them (SQLite: text); read through `times()`, which few tasks need.
    raw_enqueued_at: Any = None
    raw_started_at: Any = None
    concurrency_key: str | None = None

    def times(self) -> tuple[datetime, datetime]:
        """When the task was enqueued and when this attempt was claimed."""
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


def as_datetime(value: Any) -> datetime:
    """A stored time as an aware datetime (SQLite hands back naive UTC datetimes or text)."""
    parsed = value if isinstance(value, datetime) else parse_datetime(value)
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


class Claimer:
    """Claims for one worker process on one database; statements are built once and reused."""

    def __init__(self, using: str, worker_id: int, selectors: list[str]) -> None:
        self.using = using
        self.worker_id = worker_id
        dialect = Dialect(connections[using].vendor)
        self.statements = [
            (dialect.claim_sql(filter_sql), params)
            for filter_sql, params in (Selector(text).filter for text in dict.fromkeys(selectors))
        ]

    def claim(self, limit: int, now: datetime) -> list[ClaimedTask]:
        connection = connections[self.using]
        stamp = connection.ops.adapt_datetimefield_value(now)
        claimed: list[ClaimedTask] = []
        with connection.cursor() as cursor:
            for sql, filter_params in self.statements:
                wanted = limit - len(claimed)
                if wanted <= 0:
                    break
                cursor.execute(sql, {**filter_params, "now": stamp, "limit": wanted, "worker": self.worker_id})
                rows = [
                    ClaimedTask(*row[:4], _loads(row[4]), *row[5:9], _loads(row[9]), *row[10:13])
                    for row in cursor.fetchall()
                ]
                rows.sort(key=lambda task: (-task.priority, task.id))
                claimed.extend(rows)
        return claimed
