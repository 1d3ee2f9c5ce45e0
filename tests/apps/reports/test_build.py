"""The build task run in this process: its CSV and chart, its progress, and how it stops and
fails."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree

import pytest

from apps.reports.charts import nice_ceiling
from apps.reports.data import REGIONS, UNIT_PRICES, monthly_sales
from apps.reports.models import Report
from apps.reports.tasks import build_report
from taskqueue import Stopped
from tests.apps.reports.conftest import media_files

SVG = "{http://www.w3.org/2000/svg}"


def csv_rows(report: Report) -> list[dict[str, str]]:
    with report.csv_file.open("rb") as file:
        return list(csv.DictReader(io.StringIO(file.read().decode())))


def test_the_demo_data_is_the_same_for_the_same_month_and_differs_between_months() -> None:
    assert monthly_sales(2024, 5) == monthly_sales(2024, 5)
    assert monthly_sales(2024, 5) != monthly_sales(2023, 5)
    assert len(monthly_sales(2024, 5)) == len(REGIONS) * len(UNIT_PRICES)


def test_the_csv_has_a_row_per_month_region_and_product_with_the_data_sets_totals(
    built_report: Report,
) -> None:
    rows = csv_rows(built_report)
    expected = [sale for month in (1, 2, 3) for sale in monthly_sales(2024, month)]

    assert built_report.status == Report.Status.SUCCEEDED and built_report.progress == 100
    assert len(rows) == 3 * len(REGIONS) * len(UNIT_PRICES)
    assert list(rows[0]) == ["month", "region", "product", "units", "revenue"]
    assert {row["month"] for row in rows} == {"2024-01", "2024-02", "2024-03"}
    assert sum(int(row["units"]) for row in rows) == sum(sale.units for sale in expected)
    assert sum(Decimal(row["revenue"]) for row in rows) == sum(sale.revenue for sale in expected)
    assert built_report.csv_file.name.endswith("sales-2024-03m.csv")


def test_the_chart_is_an_svg_with_a_bar_per_month(built_report: Report) -> None:
    with built_report.chart.open("rb") as file:
        svg = ElementTree.fromstring(file.read())

    bars = [rect for rect in svg.iter(f"{SVG}rect") if rect.find(f"{SVG}title") is not None]
    assert svg.tag == f"{SVG}svg" and svg.get("role") == "img"
    assert svg.findtext(f"{SVG}title") == "Revenue per month, 2024"
    assert [bar.findtext(f"{SVG}title").split(":")[0] for bar in bars] == ["Jan", "Feb", "Mar"]


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (7, 10), (12_345, 20_000), (0.3, 0.5), (250, 250)]
)
def test_the_chart_axis_ends_on_a_round_number(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == ceiling


def test_the_task_returns_the_names_of_its_files(make_report: Callable[..., Report]) -> None:
    report = make_report()
    names = build_report.call(report.pk)
    report.refresh_from_db()
    assert names == {"csv": report.csv_file.name, "chart": report.chart.name}


def test_progress_rises_after_every_step_until_100(
    make_report: Callable[..., Report], stop_when
) -> None:
    report = make_report(months=6)
    seen: list[int] = []

    def note_progress() -> bool:
        seen.append(Report.objects.get(pk=report.pk).progress)
        return False

    stop_when(note_progress)

    build_report.call(report.pk)

    assert (
        seen == sorted(set(seen)) and len(seen) == 6 + 1
    )  # a step per month and the CSV; then done
    assert seen[0] > 0 and seen[-1] < 100
    report.refresh_from_db()
    assert (report.status, report.progress) == (Report.Status.SUCCEEDED, 100)


@pytest.mark.parametrize(
    "stop_point",
    [
        pytest.param(lambda report, media: report.progress > 0, id="after-the-first-month"),
        pytest.param(lambda report, media: bool(media_files(media)), id="after-the-csv-is-saved"),
    ],
)
def test_a_cancel_mid_build_ends_it_cancelled_without_files(
    make_report: Callable[..., Report], stop_when, media_root: Path, stop_point
) -> None:
    report = make_report()

    def cancel_here() -> bool:
        current = Report.objects.get(pk=report.pk)
        return (
            stop_point(current, media_root) and current.request_cancel()
        )  # what the cancel view does

    stop_when(cancel_here)
    with pytest.raises(Stopped):
        build_report.call(report.pk)

    report.refresh_from_db()
    assert report.status == Report.Status.CANCELLED and report.finished_at is not None
    assert 0 < report.progress < 100
    assert not report.csv_file and not report.chart and media_files(media_root) == []


def test_a_build_an_operator_cancelled_from_the_admin_ends_the_report_cancelled(
    make_report: Callable[..., Report], stop_when, media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = make_report()
    monkeypatch.setattr(
        "apps.reports.tasks.cancel_requested", lambda: True
    )  # the worker's word, not the row's
    stop_when(lambda: True)
    with pytest.raises(Stopped):
        build_report.call(report.pk)

    report.refresh_from_db()
    assert report.status == Report.Status.CANCELLED and not report.cancel_requested
    assert media_files(media_root) == []


def test_a_worker_shutting_down_puts_the_report_back_in_the_queue(
    make_report: Callable[..., Report], stop_when, media_root: Path
) -> None:
    report = make_report()
    stop_when(lambda: bool(media_files(media_root)))
    with pytest.raises(Stopped):
        build_report.call(report.pk)

    report.refresh_from_db()
    assert (report.status, report.progress, report.started_at) == (Report.Status.QUEUED, 0, None)
    assert media_files(media_root) == []


def test_a_failing_build_tells_the_owner_without_the_details(
    make_report: Callable[..., Report], monkeypatch: pytest.MonkeyPatch, media_root: Path
) -> None:
    def broken_chart(*args: object) -> str:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("apps.reports.tasks.bar_chart", broken_chart)
    report = make_report(task_id="41")
    with pytest.raises(
        RuntimeError
    ):  # the queue keeps the exception and its traceback for operators
        build_report.call(report.pk)

    report.refresh_from_db()
    assert report.status == Report.Status.FAILED and report.finished_at is not None
    assert "Something went wrong" in report.error and "task 41" in report.error
    assert "secret" not in report.error
    assert media_files(media_root) == []  # the CSV saved before the chart failed is gone


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        ({"cancel_requested": True}, Report.Status.CANCELLED),
        ({"status": Report.Status.CANCELLED}, Report.Status.CANCELLED),
        ({"status": Report.Status.FAILED}, Report.Status.FAILED),
    ],
)
def test_a_report_cancelled_or_finished_before_its_build_starts_is_not_built(
    make_report: Callable[..., Report], media_root: Path, fields: dict, outcome: str
) -> None:
    report = make_report(**fields)
    assert build_report.call(report.pk) is None
    report.refresh_from_db()
    assert report.status == outcome and media_files(media_root) == []
