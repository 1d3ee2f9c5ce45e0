"""Where Django's own ImmediateBackend defines a behaviour, this backend shows the same results."""

from __future__ import annotations

import pytest
from django.tasks.signals import task_enqueued, task_finished, task_started

from tests.taskqueue import sample_tasks as t

pytestmark = pytest.mark.django_db

CALLS = [
    (t.add, (2, 3), {}),
    (t.add_later, (20, 22), {}),
    (t.which_attempt, (), {}),
    (t.echo, ((1, 2), "x"), {"pair": (3, 4)}),
    (t.fail, ("broken",), {}),
    (t.exit_now, (), {}),
]


@pytest.fixture
def both_backends(settings):
    settings.TASKS = {
        "default": {"BACKEND": "taskqueue.backend.DatabaseBackend", "QUEUES": [], "OPTIONS": {}},
        "immediate": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend", "QUEUES": []},
    }


@pytest.fixture
def signal_log():
    log: dict[str, list[tuple[str, str]]] = {}

    def receiver_for(name):
        def receiver(sender, task_result, **kwargs):
            log.setdefault(task_result.backend, []).append((name, task_result.status))

        return receiver

    receivers = [
        (signal, receiver_for(name))
        for name, signal in (
            ("enqueued", task_enqueued),
            ("started", task_started),
            ("finished", task_finished),
        )
    ]
    for signal, receiver in receivers:
        signal.connect(receiver)
    yield log
    for signal, receiver in receivers:
        signal.disconnect(receiver)


def observable(result) -> dict:
    """What a caller can observe of a finished result, minus ids and times, which differ by
    nature."""
    seen = {
        "status": result.status,
        "args": result.args,
        "kwargs": result.kwargs,
        "attempts": result.attempts,
        "errors": [error.exception_class_path for error in result.errors],
        "traceback_ends": [error.traceback.strip().splitlines()[-1] for error in result.errors],
        "is_finished": result.is_finished,
    }
    if result.status == "SUCCESSFUL":
        value = result.return_value
        seen["return_value"] = (
            {**value, "id": "-"} if isinstance(value, dict) and "id" in value else value
        )
    return seen


@pytest.mark.parametrize(("task", "args", "kwargs"), CALLS, ids=lambda v: getattr(v, "name", ""))
def test_same_observable_result_as_the_immediate_backend(
    both_backends, signal_log, drain, task, args, kwargs
):
    immediate = task.using(backend="immediate").enqueue(*args, **kwargs)
    queued = task.enqueue(*args, **kwargs)
    drain()
    queued = task.get_result(queued.id)
    assert observable(queued) == observable(immediate)
    assert signal_log["default"] == signal_log["immediate"]
