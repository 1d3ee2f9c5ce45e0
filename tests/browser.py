"""A real browser for tests: Debian's chromium driven by Playwright; skipped, saying why, where
missing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Headless on a machine with no network but loopback: no background traffic, no sandbox as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no chromium at {CHROMIUM}: `make test` installs Debian's chromium where it can "
            "(apt-get)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is in requirements-dev.txt"
    )
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still
    # synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        page = context.new_page()
        # Every browser test also proves the pages it visits run under the site's
        # Content-Security-Policy.
        blocked: list[str] = []
        page.on(
            "console",
            lambda message: (
                blocked.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        try:
            yield page
        finally:
            context.close()
            browser.close()
            close_connections_of_this_context()
        assert not blocked, f"the Content-Security-Policy blocked: {blocked}"


def close_connections_of_this_context() -> None:
    """While Playwright runs, Django's connections belong to its event loop's context, which no
    later test can reach to close; left open, they go stale when a test restarts PostgreSQL."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as a test artifact."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
