"""The front doors register here how to run their tasks; the worker looks them up by a task's kind."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from taskqueue.engine.claim import ClaimedTask
    from taskqueue.engine.outcomes import Outcome
    from taskqueue.engine.running import TaskControl

Executor = Callable[["ClaimedTask", "TaskControl"], "Outcome"]

_executors: dict[str, Executor] = {}


def register(kind: str, executor: Executor) -> None:
    _executors[kind] = executor


def executor_for(kind: str) -> Executor | None:
    return _executors.get(kind)


@functools.cache
def resolve(path: str) -> Any:
    """What a task's dotted path names (queue class, task function), imported once per process.

    A failed import raises and is not cached, so a deploy that adds the module is picked up.
    """
    return import_string(path)
