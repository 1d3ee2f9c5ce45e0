"""In a real browser: a visitor signs up and the welcome email reaches the SMTP server through a
worker."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow


def test_a_visitor_signs_up_and_the_welcome_email_arrives(
    page, live_server, workers, smtp_server
) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    workers.start("--queues", "email", EMAIL_URL=smtp_server.url, SITE_URL=live_server.url)

    page.goto(live_server.url)
    page.get_by_role("navigation").get_by_role("link", name="Sign up").click()
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label(re.compile(r"^Password:?$")).fill("a long and unusual passphrase")
    page.get_by_label("Password confirmation").fill("a long and unusual passphrase")
    page.get_by_role("button", name="Create account").click()

    expect(page.get_by_role("status")).to_contain_text(
        "A welcome email is on its way to ada@example.com"
    )
    expect(page.get_by_role("status")).to_be_focused()  # so a screen reader reads it first
    expect(page.get_by_role("button", name="Log out ada")).to_be_visible()
    message = smtp_server.wait_for_message(timeout=15)
    assert message["To"] == "ada@example.com"
    assert f"{live_server.url}/accounts/login/" in message.get_body(("plain",)).get_content()
