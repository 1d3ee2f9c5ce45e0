"""In a real browser: the home page reads well on a desktop and a phone, and every link on it leads
somewhere."""

from __future__ import annotations

import pytest

from tests.browser import screenshot

pytestmark = pytest.mark.slow


def test_every_link_on_the_home_page_leads_to_a_page_that_answers(page, live_server, db) -> None:
    page.goto(live_server.url)
    screenshot(page, "home")
    links = page.locator("main a").evaluate_all("links => links.map(a => a.href)")
    assert len(links) >= 6
    for url in links:
        response = page.goto(url)
        assert response is not None and response.ok, (
            f"{url} answered {response and response.status}"
        )


def test_the_home_page_fits_a_phone_screen_without_sideways_scrolling(
    page, live_server, db
) -> None:
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(live_server.url)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "home-phone")
