"""A database-backed task queue for Django: one engine, three front doors.

    from taskqueue import (BaseQueue, TaskInfo, Retry, DupeKeyExc, DeserializationExc, Worker,
                           WorkerGroup)
    from taskqueue import stop_requested, Stopped   # any task: should I stop now?
                                                    # (then raise Stopped)
    from taskqueue import cancel, retry             # operations on tasks by id, from any front door
    from taskqueue.backend import DatabaseBackend   # django.tasks
    from taskqueue.celery import shared_task, AsyncResult

This package stands alone: it depends on Django only and imports nothing from the site around it.
Names are imported lazily, so `import taskqueue` works before Django's app registry is ready.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "BaseQueue": "taskqueue.queues",
    "TaskInfo": "taskqueue.queues",
    "Retry": "taskqueue.queues",
    "DupeKeyExc": "taskqueue.exceptions",
    "DeserializationExc": "taskqueue.exceptions",
    "SerializationError": "taskqueue.exceptions",
    "Stopped": "taskqueue.exceptions",
    "UndeclaredTask": "taskqueue.exceptions",
    "TimeLimitExceeded": "taskqueue.exceptions",
    "stop_requested": "taskqueue.engine.running",
    "cancel_requested": "taskqueue.engine.running",
    "cancel": "taskqueue.engine.operations",
    "retry": "taskqueue.engine.operations",
    "QueueInfo": "taskqueue.control",
    "Worker": "taskqueue.worker.threads",
    "WorkerGroup": "taskqueue.worker.threads",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'taskqueue' has no attribute {name!r}")
