"""The front doors register here how to run their tasks; the worker looks them up by a task's kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskqueue.engine.claim import ClaimedTask
    from taskqueue.engine.outcomes import Outcome
    from taskqueue.engine.running import TaskControl

Executor = Callable[["ClaimedTask", "TaskControl"], "Outcome"]

_executors: dict[str, Executor] = {}
_worker_start_hooks: list[Callable[[], None]] = []


def register(kind: str, executor: Executor, on_worker_start: Callable[[], None] | None = None) -> None:
    """A front door's executor for its kind of task, and what it needs done once in a worker process."""
    _executors[kind] = executor
    if on_worker_start is not None and on_worker_start not in _worker_start_hooks:
        _worker_start_hooks.append(on_worker_start)


def worker_starting() -> None:
    for hook in _worker_start_hooks:
        hook()


def executor_for(kind: str) -> Executor | None:
    return _executors.get(kind)
