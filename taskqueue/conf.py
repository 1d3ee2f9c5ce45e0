"""The engine's settings: one `TASKQUEUE` dict in the Django settings, with documented defaults.

    TASKQUEUE = {
        "WORKERS": [{"name": "default", "queues": ["*"], "num_threads": 1,
                     "sleep_seconds_when_empty": 1.0}],
        "RESULT_RETENTION": 86400.0,
        ...
    }

`taskqueue_worker` flags override these for one run. `checks.py` reports every bad value at
start-up. Every key, with its default: docs/settings.md.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field, fields
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed


@dataclass(frozen=True)
class WorkerGroupConfig:
    """One group of worker threads in a worker process (the shape of django-task-queue's `workers`
    entries)."""

    name: str = "worker"
    num_threads: int = 1
    # Idle wait between polls; LISTEN/NOTIFY on PostgreSQL wakes workers sooner.
    sleep_seconds_when_empty: float = 1.0
    # Queue selectors in claim order: exact names, "*" for all, "email*" for a prefix.
    queues: tuple[str, ...] = ("*",)
    # Dotted paths of queue classes; their queue names are added to `queues`.
    queue_classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class EngineSettings:
    WORKERS: tuple[WorkerGroupConfig, ...] = (WorkerGroupConfig(),)
    # Most tasks one thread claims in one query; the batch shrinks to 1 while tasks run long.
    BATCH_SIZE: int = 64
    # How often a worker process proves it is alive and looks for tasks abandoned by dead ones.
    HEARTBEAT_INTERVAL: float = 2.0
    # A worker whose death cannot be proved (another host, no advisory lock) is presumed dead
    # after this long without a heartbeat: conservative, so a slow worker is never run twice.
    WORKER_DEAD_AFTER: float = 120.0
    # After SIGTERM, running tasks get this long to finish before they are put back.
    SHUTDOWN_TIMEOUT: float = 25.0
    # Seconds successful tasks (and their results) are kept; 0 deletes them at once.
    RESULT_RETENTION: float = 86400.0
    # Wake idle workers through PostgreSQL LISTEN/NOTIFY (polling stays the correctness path).
    LISTEN_NOTIFY: bool = True
    # Static recurring tasks:
    # {key: {"task_path": ..., "schedule": "0 3 * * *", "timezone": ..., ...}}.
    RECURRING: dict[str, dict[str, Any]] = field(default_factory=dict)
    # How often a worker's scheduler looks for due recurring tasks.
    SCHEDULER_INTERVAL: float = 1.0
    # The database alias the queue's tables live on (with taskqueue.routers.TaskQueueRouter).
    DATABASE: str = "default"
    # Largest JSON text of one task's arguments, as stored (non-ASCII characters escaped as \uXXXX),
    # in bytes: a bigger enqueue raises SerializationError. Rows this size slow every claim that
    # reads them; store big data elsewhere and pass its id. A positive whole number: there is no
    # "unlimited".
    MAX_PAYLOAD_BYTES: int = 1024 * 1024
    # Seconds a task may run before TimeLimitExceeded is raised in it, for tasks that declare no
    # limit of their own (None: no limit); and how long past that a task may go on before its
    # process is ended.
    DEFAULT_TIMEOUT: float | None = None
    TIMEOUT_GRACE: float = 10.0
    # Modules that declare tasks, imported by workers at start besides each installed app's `tasks`
    # module: only declared tasks run (see taskqueue.engine.registry).
    TASK_MODULES: tuple[str, ...] = ()


BACKEND_PATH = "taskqueue.backend.DatabaseBackend"


def backend_options() -> dict[str, Any]:
    """The OPTIONS of this app's django.tasks backend in TASKS (the first one, if several)."""
    for config in (getattr(settings, "TASKS", {}) or {}).values():
        if config.get("BACKEND") == BACKEND_PATH:
            return dict(config.get("OPTIONS") or {})
    return {}


def database_alias() -> str:
    """TASKQUEUE["DATABASE"] (or the backend's OPTIONS), read on every call: routers ask often,
    cheaply."""
    return backend_options().get("DATABASE") or (getattr(settings, "TASKQUEUE", {}) or {}).get(
        "DATABASE", "default"
    )


def configured(name: str, default: Any) -> Any:
    """One setting as given (TASKQUEUE, then the backend's OPTIONS), unchecked: for code that must
    not fail on a mistake in another setting (the system checks report every one)."""
    return (dict(getattr(settings, "TASKQUEUE", {}) or {}) | backend_options()).get(name, default)


@functools.cache
def max_payload_bytes() -> int:
    """TASKQUEUE["MAX_PAYLOAD_BYTES"] (or the backend's OPTIONS), cached: every enqueue asks.

    Only this one value is read, so a mistake elsewhere in the settings does not fail enqueues (the
    system checks report it); a bad value here raises ValueError rather than let payloads through.
    """
    value = configured("MAX_PAYLOAD_BYTES", EngineSettings.MAX_PAYLOAD_BYTES)
    check_max_payload_bytes(value)
    return value


def forget_cached_settings(*, setting: str, **kwargs: Any) -> None:
    """Tests change settings with override_settings: the cached value must follow."""
    if setting in ("TASKQUEUE", "TASKS"):
        max_payload_bytes.cache_clear()


setting_changed.connect(forget_cached_settings)


def load_settings(overrides: dict[str, Any] | None = None) -> EngineSettings:
    """The effective settings: defaults, then `settings.TASKQUEUE`, then the OPTIONS of the
    django.tasks backend, then `overrides` (the worker's flags). Raises ValueError naming every bad
    value."""
    engine, found = read_settings(overrides)
    if found:
        raise ValueError(" ".join(found))
    return engine


def read_settings(overrides: dict[str, Any] | None = None) -> tuple[EngineSettings, list[str]]:
    """The effective settings, with what is wrong in them: one message per bad value. A bad value is
    replaced by its default in the settings returned, so every other value is still checked."""
    found: list[str] = []
    configured_values = getattr(settings, "TASKQUEUE", {}) or {}
    if not isinstance(configured_values, dict):
        found.append(f"TASKQUEUE must be a dict of settings, got {configured_values!r}.")
        configured_values = {}
    values = configured_values | backend_options() | (overrides or {})
    known = {f.name for f in fields(EngineSettings)}
    unknown = set(values) - known
    if unknown:
        found.append(f"Unknown TASKQUEUE settings: {', '.join(sorted(unknown))}.")
    values = {name: value for name, value in values.items() if name in known}
    if "WORKERS" in values:
        groups = []
        for entry in values["WORKERS"] or [{}]:
            try:
                groups.append(worker_group(entry))
            except (TypeError, ValueError) as error:
                found.append(str(error))
        values["WORKERS"] = tuple(groups) or EngineSettings.WORKERS
    engine = EngineSettings(**values)
    found.extend(problems(engine))
    return engine, found


def worker_group(entry: dict[str, Any] | WorkerGroupConfig) -> WorkerGroupConfig:
    if isinstance(entry, WorkerGroupConfig):
        return entry
    if not isinstance(entry, dict):
        raise ValueError(f"Each TASKQUEUE['WORKERS'] entry must be a dict, got {entry!r}.")
    known = {f.name for f in fields(WorkerGroupConfig)}
    unknown = set(entry) - known
    if unknown:
        raise ValueError(f"Unknown worker group keys {sorted(unknown)}; known: {sorted(known)}.")
    values = dict(entry)
    for key in ("queues", "queue_classes"):
        if key in values:
            if isinstance(values[key], str) or not all(
                isinstance(item, str) for item in values[key]
            ):
                raise ValueError(
                    f"Worker group {key!r} must be a list of strings, got {values[key]!r}."
                )
            values[key] = tuple(values[key])
    if values.get("queue_classes") and "queues" not in values:
        values["queues"] = ()
    return WorkerGroupConfig(**values)


def seconds(value: Any, *, zero: bool = False) -> bool:
    """A number of seconds a timer can wait: finite, above zero (or zero too), at most
    threading.TIMEOUT_MAX."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return (value >= 0 if zero else value > 0) and value <= threading.TIMEOUT_MAX


def problems(engine: EngineSettings) -> list[str]:
    """What is wrong in `engine`, one message per bad value."""
    found = []
    if (
        isinstance(engine.BATCH_SIZE, bool)
        or not isinstance(engine.BATCH_SIZE, int)
        or engine.BATCH_SIZE < 1
    ):
        found.append(
            "TASKQUEUE['BATCH_SIZE'] must be a whole number of 1 or more, "
            f"got {engine.BATCH_SIZE!r}."
        )
    for name in ("HEARTBEAT_INTERVAL", "WORKER_DEAD_AFTER", "SCHEDULER_INTERVAL"):
        value = getattr(engine, name)
        if not seconds(value):
            found.append(
                f"TASKQUEUE[{name!r}] must be a positive number of seconds, got {value!r}."
            )
    if engine.DEFAULT_TIMEOUT is not None and not seconds(engine.DEFAULT_TIMEOUT):
        found.append(
            f"TASKQUEUE['DEFAULT_TIMEOUT'] must be None or a positive number of seconds, "
            f"got {engine.DEFAULT_TIMEOUT!r}."
        )
    for name in ("SHUTDOWN_TIMEOUT", "RESULT_RETENTION", "TIMEOUT_GRACE"):
        value = getattr(engine, name)
        if not seconds(value, zero=True):
            found.append(
                f"TASKQUEUE[{name!r}] must be a number of seconds, zero or more, got {value!r}."
            )
    try:
        check_max_payload_bytes(engine.MAX_PAYLOAD_BYTES)
    except ValueError as error:
        found.append(str(error))
    if (
        seconds(engine.WORKER_DEAD_AFTER)
        and seconds(engine.HEARTBEAT_INTERVAL)
        and engine.WORKER_DEAD_AFTER < 3 * engine.HEARTBEAT_INTERVAL
    ):
        found.append("TASKQUEUE['WORKER_DEAD_AFTER'] must be at least three HEARTBEAT_INTERVALs.")
    if not isinstance(engine.DATABASE, str) or engine.DATABASE not in settings.DATABASES:
        found.append(f"TASKQUEUE['DATABASE'] is {engine.DATABASE!r}, which is not in DATABASES.")
    if not isinstance(engine.LISTEN_NOTIFY, bool):
        found.append(
            f"TASKQUEUE['LISTEN_NOTIFY'] must be True or False, got {engine.LISTEN_NOTIFY!r}."
        )
    if not isinstance(engine.RECURRING, dict):
        found.append("TASKQUEUE['RECURRING'] must be a dict of recurring task definitions by key.")
    else:
        for key, definition in engine.RECURRING.items():
            if not isinstance(definition, dict) or not {"task_path", "schedule"} <= set(definition):
                found.append(
                    f"TASKQUEUE['RECURRING'][{key!r}] needs at least 'task_path' and 'schedule'."
                )
    modules = engine.TASK_MODULES
    if (
        isinstance(modules, str)
        or not isinstance(modules, list | tuple)
        or not all(isinstance(module, str) and module for module in modules)
    ):
        found.append(f"TASKQUEUE['TASK_MODULES'] must be a list of module names, got {modules!r}.")
    for group in engine.WORKERS:
        if (
            isinstance(group.num_threads, bool)
            or not isinstance(group.num_threads, int)
            or group.num_threads < 1
        ):
            found.append(f"Worker group {group.name!r}: num_threads must be 1 or more.")
        if not seconds(group.sleep_seconds_when_empty):
            found.append(
                f"Worker group {group.name!r}: "
                "sleep_seconds_when_empty must be a positive number of seconds."
            )
        if not group.queues and not group.queue_classes:
            found.append(f"Worker group {group.name!r} selects no queue.")
    return found


def check_max_payload_bytes(value: Any) -> None:
    """A whole number of bytes above zero: there is no "no limit" (None or 0), as rows of any size
    would then reach the claim query and every worker's memory."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            "TASKQUEUE['MAX_PAYLOAD_BYTES'] must be a positive whole number of bytes "
            f"(default 1048576, 1 MiB), got {value!r}."
        )
