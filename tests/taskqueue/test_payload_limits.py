"""Arguments every front door refuses at enqueue, before any SQL: nothing is stored, and the
caller's transaction goes on (on PostgreSQL a statement the server refused would have aborted
it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.checks import Error
from django.db import transaction
from django.tasks import task_backends
from django.test import override_settings
from django.utils import timezone

from taskqueue import SerializationError
from taskqueue.checks import check_settings
from taskqueue.conf import load_settings
from taskqueue.models import PausedQueue, Task
from taskqueue.serialization import MAX_DEPTH
from tests.taskqueue.sample_limits import EchoQueue, celery_echo, echo

pytestmark = pytest.mark.django_db
MiB = 1024 * 1024


def nested(levels: int, inner: Any = "bottom") -> Any:
    """`inner` inside `levels` lists and dicts, alternately."""
    value = inner
    for level in range(levels):
        value = [value] if level % 2 else {"down": value}
    return value


# Each front door's ways in, given one argument.
DOORS: dict[str, Callable[[Any], Any]] = {
    "BaseQueue.add_task": lambda value: EchoQueue.add_task(value),
    "BaseQueue.add_tasks": lambda value: EchoQueue.add_tasks(["fine", value]),
    "django.tasks enqueue": lambda value: echo.enqueue(value),
    "django.tasks enqueue, keyword": lambda value: echo.enqueue(value=value),
    "django.tasks enqueue_all": lambda value: task_backends["default"].enqueue_all(
        [(echo, ["fine"], {}), (echo, [value], {})]
    ),
    "shared_task delay": lambda value: celery_echo.delay(value),
    "shared_task apply_async, keyword": lambda value: celery_echo.apply_async((), {"value": value}),
}
# What is refused, and the words that name why.
REFUSED: dict[str, tuple[Any, str]] = {
    "NUL in a string": ("a\x00b", "NUL"),
    "NUL in a dict key": ({"key\x00": 1}, "NUL"),
    "NUL nested": ({"a": [{"b": ["ok", "\x00"]}]}, "NUL"),
    "lone surrogate": ("\ud800", "lone surrogate"),
    "lone surrogate in a dict key": ({"\udfff": 1}, "lone surrogate"),
    "lone surrogate nested": ([[{"x": "text \udc80"}]], "lone surrogate"),
    "integer 2**63": (2**63, "64-bit"),
    "integer -2**63 - 1, nested": ({"n": [-(2**63) - 1]}, "64-bit"),
    "integer of 5,000 digits": ([10**4999], "64-bit"),
    "nesting of MAX_DEPTH levels": (nested(MAX_DEPTH), f"limit of {MAX_DEPTH} levels"),
    "nesting of 20,000 levels": (nested(20_000), f"limit of {MAX_DEPTH} levels"),
    "1 MiB of text": ("x" * MiB, "MAX_PAYLOAD_BYTES"),
}


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("value", REFUSED)
def test_every_door_refuses_the_argument_and_stores_nothing(door: str, value: str) -> None:
    argument, reason = REFUSED[value]
    with pytest.raises(SerializationError, match=reason):
        DOORS[door](argument)
    assert not Task.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(
    "value", ["NUL in a string", "lone surrogate in a dict key", "integer 2**63"]
)
def test_a_refusal_leaves_the_callers_transaction_usable(door: str, value: str) -> None:
    """The writes before and after the refused enqueue commit: the check ran in Python, before any
    SQL."""
    with transaction.atomic():
        PausedQueue.objects.create(name="before", paused_at=timezone.now())
        with pytest.raises(SerializationError):
            DOORS[door](REFUSED[value][0])
        PausedQueue.objects.create(name="after", paused_at=timezone.now())
    assert set(PausedQueue.objects.values_list("name", flat=True)) == {"before", "after"}
    assert not Task.objects.exists()


ACCEPTED = {
    "integers at the edges of 64 bits": [2**63 - 1, -(2**63)],
    "digits in a string": "12345678901234567890123456789",
    "a backslash and u0000 (no NUL)": "\\u0000 and \\ud800",
    "brackets in strings": "[[[[{{{{" * 40,
    "characters beyond U+FFFF": "emoji 😀, é, 中文",
    "nesting of MAX_DEPTH - 2 levels": nested(MAX_DEPTH - 2),
    "wide, shallow": [{"id": index, "tags": ["a", "b"]} for index in range(500)],
    "just under 1 MiB": "x" * (MiB - 100),
}


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("value", ACCEPTED)
def test_what_is_within_the_limits_is_stored_and_read_back_unchanged(door: str, value: str) -> None:
    """The limits refuse nothing a database accepts: each of these is stored (by this database) as
    given."""
    DOORS[door](ACCEPTED[value])
    stored = [task.payload for task in Task.objects.order_by("id")][-1]
    assert ACCEPTED[value] in [
        stored.get("arg"),
        *stored.get("args", []),
        *stored.get("kwargs", {}).values(),
    ]


def test_max_payload_bytes_defaults_to_one_mebibyte() -> None:
    assert load_settings().MAX_PAYLOAD_BYTES == 1048576


@override_settings(TASKQUEUE={"MAX_PAYLOAD_BYTES": 200})
@pytest.mark.parametrize("door", DOORS)
def test_the_payload_limit_comes_from_the_setting(door: str) -> None:
    DOORS[door]("x" * 100)
    with pytest.raises(SerializationError, match=r"MAX_PAYLOAD_BYTES'\] \(200 bytes\)"):
        DOORS[door]("x" * 200)


@pytest.mark.parametrize("value", [0, None, -1, 1.5, True, "1MB"])
def test_a_bad_payload_limit_is_reported_by_the_system_checks(settings, value: object) -> None:
    settings.TASKQUEUE = {"MAX_PAYLOAD_BYTES": value}
    errors = check_settings(None)
    assert [error.id for error in errors] == ["taskqueue.E001"]
    assert isinstance(errors[0], Error)
    assert "MAX_PAYLOAD_BYTES" in errors[0].msg and "positive whole number" in errors[0].msg
    with pytest.raises(ValueError, match="MAX_PAYLOAD_BYTES"):
        EchoQueue.add_task("an enqueue does not go unchecked either")
