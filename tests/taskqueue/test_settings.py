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
            {
                "name": "quick",
                "num_threads": 4,
                "sleep_seconds_when_empty": 0.5,
                "queues": ["email*", "default"],
            },
            {"name": "long", "queue_classes": ["tests.taskqueue.sample_queues.StoppableQueue"]},
        ],
        "RESULT_RETENTION": 0,
    }
    engine = load_settings()
    assert engine.WORKERS[0].queues == ("email*", "default") and engine.WORKERS[0].num_threads == 4
    assert engine.WORKERS[1].queues == () and engine.WORKERS[1].queue_classes[0].endswith(
        "StoppableQueue"
    )
    assert engine.RESULT_RETENTION == 0


def test_overrides_win_over_settings(settings) -> None:
    settings.TASKQUEUE = {"BATCH_SIZE": 10}
    assert load_settings({"BATCH_SIZE": 99}).BATCH_SIZE == 99


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"BATCH_SIZE": 0}, "BATCH_SIZE'] must be a whole number of 1 or more"),
        ({"BATCH_SIZE": 2.5}, "BATCH_SIZE'] must be a whole number of 1 or more"),
        ({"HEARTBEAT_INTERVAL": "2"}, "HEARTBEAT_INTERVAL'] must be a positive number"),
        ({"HEARTBEAT_INTERVAL": float("nan")}, "HEARTBEAT_INTERVAL'] must be a positive number"),
        ({"SCHEDULER_INTERVAL": float("inf")}, "SCHEDULER_INTERVAL'] must be a positive number"),
        ({"RESULT_RETENTION": -1}, "RESULT_RETENTION'] must be a number of seconds, zero or more"),
        (
            {"SHUTDOWN_TIMEOUT": 1e300},
            "SHUTDOWN_TIMEOUT'] must be a number of seconds, zero or more",
        ),
        ({"LISTEN_NOTIFY": "yes"}, "LISTEN_NOTIFY'] must be True or False"),
        (
            {"WORKERS": [{"sleep_seconds_when_empty": float("inf")}]},
            "sleep_seconds_when_empty must be a positive",
        ),
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


def test_every_bad_value_is_reported_at_once(settings) -> None:
    settings.TASKQUEUE = {
        "BATCH_SIZE": 0,
        "HEARTBEAT_INTERVAL": -1,
        "NOPE": 1,
        "WORKERS": [{"num_threads": 0}, 7],
    }
    messages = [error.msg for error in check_settings(None)]
    assert len(messages) == 5, messages
    parts = (
        "BATCH_SIZE",
        "HEARTBEAT_INTERVAL",
        "Unknown TASKQUEUE settings: NOPE",
        "num_threads",
        "must be a dict",
    )
    for part in parts:
        assert any(part in message for message in messages), (part, messages)
    with pytest.raises(ValueError, match=r"BATCH_SIZE.*HEARTBEAT_INTERVAL"):
        load_settings()


def test_settings_that_are_not_a_dict_are_reported(settings) -> None:
    settings.TASKQUEUE = ["BATCH_SIZE", 5]
    messages = [error.msg for error in check_settings(None)]
    assert messages == ["TASKQUEUE must be a dict of settings, got ['BATCH_SIZE', 5]."]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threads", "0"], "--threads must be 1 or more"),
        (["--interval", "0"], "--interval must be a positive number of seconds"),
        (["--interval", "inf"], "--interval must be a positive number of seconds"),
        (["--interval", "nan"], "--interval must be a positive number of seconds"),
        (["--interval", "1e12"], "--interval must be a positive number of seconds"),
        (["--queues", " , "], "--queues selects no queue"),
        (["--processes", "0"], "--processes must be 1 or more"),
        (["--name", "w" * 201], "--name must be 1 to 200 characters, got 201"),
        (["--name", "w" * 201, "--processes", "2"], "--name must be 1 to 200 characters"),
        (["--name", ""], "--name must be 1 to 200 characters, got 0"),
    ],
)
def test_bad_worker_flags_are_refused_before_starting(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("taskqueue_worker", *args)


def test_a_worker_group_named_longer_than_the_table_holds_is_refused(settings) -> None:
    settings.TASKQUEUE = {"WORKERS": [{"name": "g" * 250}]}
    with pytest.raises(CommandError, match="A worker name must be 1 to 200 characters, got 250"):
        call_command("taskqueue_worker")
