"""TASKQUEUE settings: documented defaults, overrides, and a clear error for every bad value."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from taskqueue.checks import check_settings
from taskqueue.conf import EngineSettings, WorkerGroupConfig, load_settings


def test_defaults_without_a_taskqueue_setting(settings) -> None:
    if hasattr(settings, "TASKQUEUE"):
        del settings.TASKQUEUE
    engine = load_settings()
    assert engine == EngineSettings()
    assert (WorkerGroupConfig(name="worker", num_threads=1, queues=("*",)),) == engine.WORKERS


def test_worker_groups_in_seed_shape(settings) -> None:
    settings.TASKQUEUE = {
        "WORKERS": [
            {"name": "quick", "num_threads": 4, "sleep_seconds_when_empty": 0.5, "queues": ["email*", "default"]},
            {"name": "long", "queue_classes": ["tests.taskqueue.sample_queues.StoppableQueue"]},
        ],
        "RESULT_RETENTION": 0,
    }
    engine = load_settings()
    assert engine.WORKERS[0].queues == ("email*", "default") and engine.WORKERS[0].num_threads == 4
    assert engine.WORKERS[1].queues == () and engine.WORKERS[1].queue_classes[0].endswith("StoppableQueue")
    assert engine.RESULT_RETENTION == 0


def test_overrides_win_over_settings(settings) -> None:
    settings.TASKQUEUE = {"BATCH_SIZE": 10}
    assert load_settings({"BATCH_SIZE": 99}).BATCH_SIZE == 99


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"BATCH_SIZE": 0}, "BATCH_SIZE'] must be a positive number"),
        ({"HEARTBEAT_INTERVAL": "2"}, "HEARTBEAT_INTERVAL'] must be a positive number"),
        ({"RESULT_RETENTION": -1}, "RESULT_RETENTION'] must be zero or more"),
        ({"HEARTBEAT_INTERVAL": 10, "WORKER_DEAD_AFTER": 20}, "at least three HEARTBEAT_INTERVALs"),
        ({"WORKERS": [{"num_threads": 0}]}, "num_threads must be 1 or more"),
        ({"WORKERS": [{"queues": "email"}]}, "must be a list of strings"),
        ({"WORKERS": [{"threads": 2}]}, "Unknown worker group keys"),
        ({"WORKERS": [{"queues": []}]}, "selects no queue"),
        ({"BATCHSIZE": 5}, "Unknown TASKQUEUE settings: BATCHSIZE"),
        ({"DATABASE": "elsewhere"}, "not in DATABASES"),
    ],
)
def test_bad_values_are_reported_by_a_system_check(settings, value: dict, message: str) -> None:
    settings.TASKQUEUE = value
    errors = check_settings(None)
    assert len(errors) == 1 and errors[0].id == "taskqueue.E001"
    assert message in errors[0].msg


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threads", "0"], "--threads must be 1 or more"),
        (["--interval", "0"], "--interval must be positive"),
        (["--queues", " , "], "--queues selects no queue"),
        (["--processes", "0"], "--processes must be 1 or more"),
    ],
)
def test_bad_worker_flags_are_refused_before_starting(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("taskqueue_worker", *args)
