"""In a real browser, with a real worker: a user watches a report being built, then downloads it;
and cancels another one."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from apps.reports.data import REGIONS, UNIT_PRICES
from tests.apps.reports.conftest import PASSWORD
from tests.browser import screenshot

pytestmark = pytest.mark.slow

# The value of the page's progress bar, once it is between 0 and 100 and none of the values seen so
# far.
BAR_SHOWS_A_NEW_VALUE = """(seen) => {
  const bar = document.querySelector("progress");
  return bar && bar.value > 0 && bar.value < 100 && !seen.includes(bar.value) ? bar.value : false;
}"""


@pytest.fixture
def expect() -> Callable:
    return pytest.importorskip("playwright.sync_api").expect


@pytest.fixture
def signed_in(page, live_server, owner: User):
    """The owner, signed in through the login page the reports page sends them to."""
    page.goto(f"{live_server.url}/reports/")
    page.get_by_label("Username").fill(owner.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/reports/")
    return page


def ask_for_report(page, year: int, months: int) -> None:
    page.get_by_label("Year").fill(str(year))
    page.get_by_label("Months").fill(str(months))
    page.get_by_role("button", name="Request report").click()


def test_the_owner_watches_the_progress_bar_move_then_downloads_the_csv(
    signed_in, report_worker, expect
) -> None:
    page = signed_in
    report_worker(step_delay_ms=800)  # 14 steps of 0.8 s: the page polls each second
    ask_for_report(page, year=2024, months=12)
    expect(page.get_by_role("heading", level=1)).to_have_text("Sales 2024, January to December")

    seen: list[int] = []
    while len(seen) < 2:
        seen.append(
            page.wait_for_function(BAR_SHOWS_A_NEW_VALUE, arg=seen, timeout=20_000).json_value()
        )
    screenshot(page, "report-in-progress")
    expect(page.locator("[data-status]")).to_have_text(
        "Succeeded", timeout=20_000
    )  # the page reloaded itself
    expect(page.get_by_role("img", name="Bar chart of revenue per month in 2024")).to_be_visible()
    screenshot(page, "report-ready")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    assert download.suggested_filename == "sales-2024-12m.csv"
    with Path(download.path()).open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 12 * len(REGIONS) * len(UNIT_PRICES)
    assert rows[0]["month"] == "2024-01" and rows[-1]["month"] == "2024-12"


def test_the_owner_cancels_a_report_while_it_is_built(signed_in, report_worker, expect) -> None:
    page = signed_in
    report_worker(
        step_delay_ms=2000
    )  # 28 s in all: the cancel must come first, even on a slow machine
    ask_for_report(page, year=2023, months=12)
    status = page.locator("[data-status]")
    expect(status).to_have_text("Running", timeout=20_000)  # once the worker has started

    page.get_by_role("button", name="Cancel report").click()

    expect(page.locator(".messages")).to_contain_text("Cancel")
    expect(status).to_have_text(
        "Cancelled", timeout=15_000
    )  # within a heartbeat of the worker, then a poll
    expect(page.get_by_role("button", name="Cancel report")).to_have_count(0)
    expect(page.get_by_role("link", name="Download CSV")).to_have_count(0)
