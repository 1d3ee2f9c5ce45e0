"""Fixtures shared by the whole suite: processes started by tests, and the environment they get."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.pgcluster import free_port

PROJECT = Path(__file__).resolve().parent.parent
# What child processes keep of this process's environment: not the settings test_settings put there.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYENV_VERSION")
PRODUCTION_SECRET = "p9Zk2v-production-like-secret-4f8dJq7xWm1Lr5Tn3Hb6Yc0Ga8Se2Ku7Vo9Pi4"


@pytest.fixture
def production_env(tmp_path: Path) -> dict[str, str]:
    """A production-like environment for processes that load the real settings (config.settings)."""
    env = {key: value for key, value in os.environ.items() if key in INHERITED or key.startswith("TEST_PG_")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "ENV_FILE": "",
        "SECRET_KEY": PRODUCTION_SECRET,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "example.com,127.0.0.1",
        "CSRF_TRUSTED_ORIGINS": "https://example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'site.sqlite3'}",
        "STATIC_ROOT": str(tmp_path / "staticfiles"),
        "EMAIL_URL": "smtp+tls://mailer:secret@127.0.0.1:2525",
        "PYTHONUNBUFFERED": "1",
    }
    return env


@pytest.fixture
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file sample tasks record their runs in, in this process and in worker processes."""
    path = tmp_path / "record.txt"
    path.touch()
    monkeypatch.setenv("TEST_RECORD_FILE", str(path))
    return path


def manage(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `manage.py` in a child process, as an operator would."""
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_for_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"Nothing answered at {url} within {timeout}s")


@pytest.fixture
def gunicorn(production_env: dict[str, str]) -> Iterator[callable]:
    """Start gunicorn with the project's gunicorn.conf.py on a free loopback port; stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**env_overrides: str) -> str:
        port = free_port()
        env = production_env | {"HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1"} | env_overrides
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi"],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        base_url = f"http://127.0.0.1:{port}"
        wait_for_http(base_url + "/healthz")
        return base_url

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
