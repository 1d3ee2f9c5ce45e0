"""Recurring tasks across daylight-saving changes, by classic cron's rule (see taskqueue.recurring).

A schedule naming wall-clock times runs once a day through both changes: at the first occurrence of
a repeated time, and at the moment after the gap for a skipped one. Intervals run at every real
tick.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from taskqueue import recurring
from taskqueue.models import RecurringRun, RecurringTask

pytestmark = pytest.mark.django_db
NOOP = "tests.taskqueue.sample_queues.NoOpQueue"
# Europe/Riga: on 2026-10-25 04:00 EEST becomes 03:00 EET (01:00 UTC), so 03:00-04:00 happens twice;
# on 2026-03-29 03:00 EET becomes 04:00 EEST (01:00 UTC), so 03:00-04:00 never happens.
# America/New_York: 01:00-02:00 happens twice on 2026-11-01; 02:00-03:00 never on 2026-03-08.


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ticks_run(schedule: str, zone: str, start: str, end: str, every: timedelta) -> list[datetime]:
    """The ticks enqueued by schedulers passing every `every` from `start` to `end` (UTC)."""
    task = recurring.schedule_recurring("dst", NOOP, schedule, timezone=zone)
    RecurringTask.objects.filter(pk=task.pk).update(
        created_at=at(start)
    )  # no tick before the window
    now = at(start)
    while now <= at(end):
        recurring.run_due(now)
        now += every
    return sorted(RecurringRun.objects.values_list("scheduled_at", flat=True))


@pytest.mark.parametrize(
    ("schedule", "zone", "start", "expected"),
    [
        (
            "30 3 * * *",
            "Europe/Riga",
            "2026-10-24 21:00",
            ["2026-10-25 00:30"],
        ),  # 03:30 EEST, not 03:30 EET
        (
            "0 2-4 * * *",
            "Europe/Riga",
            "2026-10-24 21:00",
            ["2026-10-24 23:00", "2026-10-25 00:00", "2026-10-25 02:00"],
        ),
        (
            "30 1 * * *",
            "America/New_York",
            "2026-11-01 03:00",
            ["2026-11-01 05:30"],
        ),  # 01:30 EDT, not EST
    ],
)
def test_a_wall_clock_time_the_fall_back_repeats_runs_at_its_first_occurrence_only(
    schedule: str, zone: str, start: str, expected: list[str]
) -> None:
    end = (at(start) + timedelta(hours=6)).isoformat()
    assert ticks_run(schedule, zone, start, end, timedelta(minutes=5)) == [
        at(tick) for tick in expected
    ]


@pytest.mark.parametrize(
    ("schedule", "zone", "start", "expected"),
    [
        ("30 3 * * *", "Europe/Riga", "2026-03-28 21:00", "2026-03-29 01:00"),  # at 04:00 EEST
        (
            "0,30 3 * * *",
            "Europe/Riga",
            "2026-03-28 21:00",
            "2026-03-29 01:00",
        ),  # two skipped times, one run
        ("30 2 * * *", "America/New_York", "2026-03-08 04:00", "2026-03-08 07:00"),  # at 03:00 EDT
    ],
)
def test_a_wall_clock_time_the_spring_forward_skips_runs_once_after_the_gap(
    schedule: str, zone: str, start: str, expected: str
) -> None:
    end = (at(start) + timedelta(hours=6)).isoformat()
    assert ticks_run(schedule, zone, start, end, timedelta(minutes=5)) == [at(expected)]


@pytest.mark.parametrize(
    "start", ["2026-10-24 21:00", "2026-03-28 21:00"], ids=["fall-back", "spring-forward"]
)
def test_an_hourly_schedule_runs_every_real_hour_through_the_change(start: str) -> None:
    end = (at(start) + timedelta(hours=6)).isoformat()
    ticks = ticks_run("0 * * * *", "Europe/Riga", start, end, timedelta(minutes=5))
    assert ticks == [at(start) + timedelta(hours=hour) for hour in range(7)]


@pytest.mark.parametrize(
    "change", ["2026-10-25 01:00", "2026-03-29 01:00"], ids=["fall-back", "spring-forward"]
)
def test_an_every_minute_schedule_runs_every_real_minute_through_the_change(change: str) -> None:
    start, end = at(change) - timedelta(minutes=20), at(change) + timedelta(minutes=20)
    ticks = ticks_run(
        "* * * * *", "Europe/Riga", start.isoformat(), end.isoformat(), timedelta(seconds=20)
    )
    assert ticks[0] == start and ticks[-1] == end
    assert {b - a for a, b in itertools.pairwise(ticks)} == {timedelta(minutes=1)}


def test_an_interval_has_no_tick_in_the_skipped_hour() -> None:
    """`* 3 * * *` is every minute of 03:xx; on 2026-03-29 in Riga there is none, so it does not
    run."""
    assert (
        ticks_run(
            "* 3 * * *",
            "Europe/Riga",
            "2026-03-29 00:00",
            "2026-03-29 02:00",
            timedelta(seconds=30),
        )
        == []
    )


def test_an_interval_runs_in_both_occurrences_of_the_repeated_hour() -> None:
    ticks = ticks_run(
        "*/30 3 * * *", "Europe/Riga", "2026-10-24 23:00", "2026-10-25 03:00", timedelta(minutes=5)
    )
    assert ticks == [
        at(tick)
        for tick in ("2026-10-25 00:00", "2026-10-25 00:30", "2026-10-25 01:00", "2026-10-25 01:30")
    ]
