"""A real worker process builds reports requested through the pages, and stops one its owner
cancels."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.tasks import TaskResultStatus
from django.test import Client
from django.urls import reverse

from apps.reports.data import monthly_sales
from apps.reports.models import Report
from apps.reports.tasks import build_report, sales_csv
from taskqueue.models import Status, Task
from tests.apps.reports.conftest import media_files
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


def status_of(report: Report) -> str:
    report.refresh_from_db()
    return report.status


def test_a_worker_builds_a_requested_report_the_owner_then_downloads(
    owner_client: Client, request_report: Callable[..., Report], report_worker
) -> None:
    report = request_report(year=2022, months=4)
    report_worker(step_delay_ms=50)

    wait_until(
        lambda: status_of(report) == Report.Status.SUCCEEDED,
        timeout=30,
        message="the report was built",
    )
    response = owner_client.get(reverse("reports:download_csv", args=[report.pk]))

    # The worker process generated the same figures as this one would: the data set is reproducible.
    expected = sales_csv([sale for month in range(1, 5) for sale in monthly_sales(2022, month)])
    assert b"".join(response.streaming_content) == expected
    result = build_report.get_result(report.task_id)
    assert (result.status, result.return_value["csv"]) == (
        TaskResultStatus.SUCCESSFUL,
        report.csv_file.name,
    )


def test_cancelling_a_running_report_stops_its_build_within_seconds(
    owner_client: Client, request_report: Callable[..., Report], report_worker, media_root: Path
) -> None:
    report = request_report(months=12)
    report_worker(
        step_delay_ms=2000
    )  # 28 s in all, unless the cancel ends it: room for a slow machine
    wait_until(
        lambda: Report.objects.get(pk=report.pk).progress > 0,
        timeout=30,
        message="the build made progress",
    )

    cancelled_at = time.monotonic()
    owner_client.post(reverse("reports:cancel", args=[report.pk]))
    wait_until(
        lambda: status_of(report) == Report.Status.CANCELLED,
        timeout=15,
        message="the build stopped",
    )

    assert (
        time.monotonic() - cancelled_at < 10
    )  # a heartbeat (2 s), the step under way (2 s), and slack
    assert 0 < report.progress < 100 and media_files(media_root) == []
    wait_until(
        lambda: Task.objects.get(pk=report.task_id).status == Status.CANCELLED,
        timeout=5,
        message="the queue recorded the task as cancelled",
    )
