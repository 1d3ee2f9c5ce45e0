"""Concurrency limits: at most N unfinished tasks per key, across processes and machines.

A task may carry a key (built from its arguments), a limit and a duration. Slots in use are counted
from the task table: ready tasks of the key, and running ones started less than `duration` ago (so a
holder that hangs or whose worker vanished frees its slot after the duration). Admitting a new task
and promoting blocked ones take turns on the key's lock row, so two processes never both take the
last slot. A task that finds no slot is blocked ("wait") or stored as cancelled ("discard").
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import Q, QuerySet

from taskqueue.engine import databases
from taskqueue.models import UNFINISHED, ConcurrencyKey, Status, Task

ON_CONFLICT = ("wait", "discard")


@dataclass(frozen=True, slots=True)
class Concurrency:
    """The limit one task is enqueued under."""

    key: str
    limit: int
    duration: float
    discard: bool


@dataclass(frozen=True)
class ConcurrencyRule:
    """What a task declares: a key (a format string over its arguments, or a callable taking them by
    name), a limit, a duration in seconds, and what to do on conflict."""

    key: str | Callable[..., str]
    limit: int = 1
    duration: float = 300.0
    on_conflict: str = "wait"

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1:
            raise ValueError(
                f"concurrency_limit must be a whole number of 1 or more, got {self.limit!r}."
            )
        if not isinstance(self.duration, int | float) or self.duration <= 0:
            raise ValueError(
                f"concurrency_duration must be a positive number of seconds, got {self.duration!r}."
            )
        if self.on_conflict not in ON_CONFLICT:
            raise ValueError(f"on_conflict must be 'wait' or 'discard', got {self.on_conflict!r}.")
        if not (callable(self.key) or isinstance(self.key, str)):
            raise ValueError("concurrency_key must be a format string or a callable.")

    def resolve(self, args: list[Any], kwargs: Mapping[str, Any]) -> Concurrency:
        """The limit for one call: the key made from its arguments."""
        try:
            key = self.key(**kwargs) if callable(self.key) else self.key.format(*args, **kwargs)
        except (KeyError, IndexError, AttributeError, TypeError) as error:
            raise ValueError(
                f"Cannot build the concurrency key {self.key!r} from the arguments: {error!r}"
            ) from None
        return Concurrency(
            str(key), self.limit, float(self.duration), self.on_conflict == "discard"
        )


def concurrency_rule(
    key: str | Callable[..., str] | None, limit: int, duration: float, on_conflict: str
) -> ConcurrencyRule | None:
    """The rule a task declares, checked when it is declared; None without a key."""
    return None if key is None else ConcurrencyRule(key, limit, duration, on_conflict)


def call_arguments(
    func: Callable[..., Any], args: list[Any], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """A call's arguments by parameter name, for key templates such as "account:{account_id}"."""
    try:
        return dict(inspect.signature(func).bind_partial(*args, **kwargs).arguments)
    except TypeError:
        return dict(kwargs)


def single_argument(arg: Any) -> dict[str, Any]:
    """A queue class's one argument as names: a dict's keys, a dataclass's fields, or `arg`."""
    if isinstance(arg, dict):
        return {str(name): value for name, value in arg.items()}
    if is_dataclass(arg) and not isinstance(arg, type):
        return asdict(arg)
    return {"arg": arg}


# Lock rows of keys with no unfinished task are deleted by the workers' pruning, this many at a
# time.
PRUNE_KEYS_BATCH = 1000


def _lock(using: str, key: str) -> None:
    """Take the key's lock row until the transaction ends, making the row if there is none."""
    databases.for_alias(using).lock_key(using, key)


def prune_keys(using: str) -> int:
    """Delete lock rows of keys no unfinished task uses (one batch), so that keys made from
    arguments (one per account, per order...) do not pile up. A row in use (locked) is skipped; one
    deleted while a task of its key is being enqueued is simply made again by the next `_lock`."""
    table = ConcurrencyKey._meta.db_table
    unused = (
        f"SELECT id FROM {table} k WHERE NOT EXISTS (SELECT 1 FROM {Task._meta.db_table} t "
        "WHERE t.concurrency_key = k.key "
        f"AND t.status IN ({', '.join(['%s'] * len(UNFINISHED))})) LIMIT %s"
    )
    unused += databases.for_alias(using).skip_locked
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE id IN ({unused})", [*UNFINISHED, PRUNE_KEYS_BATCH]
        )
        return cursor.rowcount


def in_use(using: str, key: str, duration: float, now: datetime) -> int:
    # A claimed task not yet started (started_at empty) holds its slot like a running one.
    running = Q(started_at__isnull=True) | Q(started_at__gt=now - timedelta(seconds=duration))
    held = Q(status=Status.READY) | (Q(status=Status.RUNNING) & running)
    return Task.objects.using(using).filter(held, concurrency_key=key).count()


def admit(using: str, concurrency: Concurrency, now: datetime) -> str:
    """The status a new task of this key starts in. Call inside the enqueue's transaction."""
    _lock(using, concurrency.key)
    if in_use(using, concurrency.key, concurrency.duration, now) < concurrency.limit:
        return Status.READY.value
    return Status.CANCELLED.value if concurrency.discard else Status.BLOCKED.value


def promote(using: str, key: str, now: datetime) -> int:
    """Make blocked tasks of `key` ready, as many as free slots allow, highest priority first."""
    with transaction.atomic(using=using):
        _lock(using, key)
        blocked = Task.objects.using(using).filter(concurrency_key=key, status=Status.BLOCKED)
        newest = blocked.order_by("-id").values("concurrency_limit", "concurrency_duration").first()
        if (
            newest is None
            or newest["concurrency_limit"] is None
            or newest["concurrency_duration"] is None
        ):
            return 0
        free = newest["concurrency_limit"] - in_use(using, key, newest["concurrency_duration"], now)
        if free <= 0:
            return 0
        ids = list(blocked.order_by("-priority", "id").values_list("pk", flat=True)[:free])
        return (
            Task.objects.using(using)
            .filter(pk__in=ids, status=Status.BLOCKED)
            .update(status=Status.READY)
        )


def keys_of(tasks: QuerySet[Task]) -> set[str]:
    """The concurrency keys the tasks have (the tasks of no key have none)."""
    return {
        key
        for key in tasks.exclude(concurrency_key=None).values_list("concurrency_key", flat=True)
        if key
    }


def sweep(using: str, now: datetime) -> int:
    """Promote what can be, for every key with blocked tasks (after cancels, crashes, expiries)."""
    keys = (
        Task.objects.using(using)
        .filter(status=Status.BLOCKED, concurrency_key__isnull=False)
        .values_list("concurrency_key", flat=True)
        .distinct()
    )
    return sum(promote(using, key, now) for key in sorted(key for key in keys if key is not None))


def discarded_note(concurrency: Concurrency) -> str:
    return f"discarded: concurrency limit {concurrency.limit} of {concurrency.key!r} reached"
