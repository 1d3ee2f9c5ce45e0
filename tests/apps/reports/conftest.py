"""Fixtures of the reports demo's tests: users, reports, media in a temporary folder, stop
requests."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from apps.reports.models import Report
from apps.reports.tasks import build_report

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path: Path) -> Path:
    """Report files land here, not in the project's media folder (worker processes are told too)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def full_speed(settings) -> None:
    """No demo pacing in this process: in-process builds take milliseconds."""
    settings.REPORTS_STEP_DELAY_MS = 0


@pytest.fixture
def owner(db) -> User:
    return User.objects.create_user("ada", "ada@example.com", PASSWORD)


@pytest.fixture
def stranger(db) -> User:
    return User.objects.create_user("mallory", "mallory@example.com", PASSWORD)


@pytest.fixture
def owner_client(client: Client, owner: User) -> Client:
    client.force_login(owner)
    return client


@pytest.fixture
def make_report(owner: User) -> Callable[..., Report]:
    """A report of the owner's for January to March 2024, unless told otherwise."""

    def make(**fields: object) -> Report:
        return Report.objects.create(**{"owner": owner, "year": 2024, "months": 3} | fields)

    return make


@pytest.fixture
def built_report(make_report: Callable[..., Report]) -> Report:
    """A report built in this process, as a worker would build it."""
    report = make_report()
    build_report.call(report.pk)
    report.refresh_from_db()
    return report


@pytest.fixture
def stop_when(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], bool]], None]:
    """Make the build's `stop_requested()` answer with `condition()`, as a worker's would on a
    cancel or a shutdown, at the point of the build a test chooses."""

    def install(condition: Callable[[], bool]) -> None:
        monkeypatch.setattr("apps.reports.tasks.stop_requested", condition)

    return install


@pytest.fixture
def request_report(owner_client: Client) -> Callable[..., Report]:
    """Request a report through the page, as its owner; with a real database (transactional tests),
    the build is enqueued as the request's transaction commits."""

    def request(year: int = 2024, months: int = 3) -> Report:
        owner_client.post(reverse("reports:create"), {"year": year, "months": months})
        return Report.objects.latest("pk")

    return request


@pytest.fixture
def report_worker(workers, media_root: Path) -> Callable[..., subprocess.Popen[bytes]]:
    """Start a worker process for the reports queue, sharing this test's media folder."""

    def start(step_delay_ms: int) -> subprocess.Popen[bytes]:
        return workers.start(
            "--queues",
            "reports",
            MEDIA_ROOT=str(media_root),
            REPORTS_STEP_DELAY_MS=str(step_delay_ms),
        )

    return start


def media_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []
