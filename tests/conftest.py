"""Fixtures shared by the whole suite: processes started by tests, and the environment they get."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from config.test_settings import TEST_TASK_MODULES
from scripts.pgcluster import free_port
from taskqueue.engine.executors import TaskControl
from taskqueue.testing import run_pending

# The `page` and `smtp_server` fixtures, and the queue's own `task_queue` (taskqueue.testing's
# helpers).
pytest_plugins = ["tests.browser", "tests.smtp", "taskqueue.pytest_plugin"]

PROJECT = Path(__file__).resolve().parent.parent
# What child processes keep of this process's environment: not the settings test_settings put there.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYENV_VERSION")
# The worker processes the tests start run the test suite's task modules too (only declared tasks
# run).
TASK_MODULES = ",".join(TEST_TASK_MODULES)
PRODUCTION_SECRET = "p9Zk2v-production-like-secret-4f8dJq7xWm1Lr5Tn3Hb6Yc0Ga8Se2Ku7Vo9Pi4"


@pytest.fixture
def production_env(tmp_path: Path) -> dict[str, str]:
    """A production-like environment for processes that load the real settings (config.settings)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key in INHERITED or key.startswith("TEST_PG_")
    }
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
        "TASKQUEUE_TASK_MODULES": TASK_MODULES,
        "PYTHONUNBUFFERED": "1",
    }
    return env


@pytest.fixture(autouse=True)
def tasks_really_enqueued(settings) -> None:
    """config/test_settings.py shows CELERY_TASK_ALWAYS_EAGER as users set it; these tests enqueue
    for real."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_TASK_EAGER_PROPAGATES = False


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> Iterator[None]:
    """The forms' rate limits count in the cache: each test starts with none of the posts before
    it."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file sample tasks record their runs in, in this process and in worker processes."""
    path = tmp_path / "record.txt"
    path.touch()
    monkeypatch.setenv("TEST_RECORD_FILE", str(path))
    return path


def manage(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `manage.py` in a child process, as an operator would."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# How long a started server may take to answer, at most, on a loaded 2-core machine (a migrate and a
# collectstatic may come first): waits end the moment it answers, or when it has exited.
READY_BUDGET = 180.0


def wait_for_http(
    url: str, timeout: float = READY_BUDGET, process: subprocess.Popen | None = None
) -> None:
    """Wait until something answers at `url`; fail at once if `process` (the server) exits
    meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(
                f"The server exited with {process.returncode} before answering at {url}"
            )
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
    """Start gunicorn with the project's gunicorn.conf.py on a free loopback port; stopped after the
    test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**env_overrides: str) -> str:
        port = free_port()
        env = (
            production_env
            | {"HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1"}
            | env_overrides
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi"],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        base_url = f"http://127.0.0.1:{port}"
        wait_for_http(base_url + "/healthz", process=process)
        return base_url

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def drain(db) -> Callable[..., int]:
    """Claim and run ready tasks in this thread, as a worker would, until none is left; returns how
    many attempts ran (taskqueue.testing.run_pending, counted).

    With a `control` whose worker is stopping, it stops after one batch, as a worker would."""

    def run(
        *selectors: str,
        batch: int = 10,
        retention: float = 3600,
        control: TaskControl | None = None,
    ) -> int:
        return len(
            run_pending(list(selectors) or ["*"], batch=batch, retention=retention, control=control)
        )

    return run


def database_url() -> str:
    """A URL for the test database, for child processes to share it."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
    return f"postgres://{settings['USER']}{password}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"


def recorded(path: Path) -> list[str]:
    return path.read_text().splitlines()


def wait_until(condition: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"Timed out after {timeout}s waiting until {message}")


class WorkerProcesses:
    """Starts `manage.py taskqueue_worker` processes on the test database; ends those still
    running."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log_path = self.log_dir / f"worker-{len(self.started)}.log"
        with open(log_path, "wb") as log:  # the child writes through its own copy of the descriptor
            process = subprocess.Popen(
                [sys.executable, "manage.py", "taskqueue_worker", *args],
                cwd=PROJECT,
                env=self.env | env,
                stdout=log,
                stderr=subprocess.STDOUT,
                # its own process group: children of a supervisor end with it
                start_new_session=True,
            )
        process.log_path = log_path  # type: ignore[attr-defined]
        self.started.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(Path(p.log_path).read_text(errors="replace") for p in self.started)  # type: ignore[attr-defined]

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            # Whatever is left of the group this test started (a supervisor's children) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def workers(transactional_db, tmp_path: Path, record_file: Path) -> Iterator[WorkerProcesses]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key in INHERITED or key.startswith("TEST_PG_")
    }
    env |= {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "ENV_FILE": "",
        "SECRET_KEY": PRODUCTION_SECRET,
        "DATABASE_URL": database_url(),
        "LOG_LEVEL": "INFO",
        "TEST_RECORD_FILE": str(record_file),
        "TASKQUEUE_TASK_MODULES": TASK_MODULES,
        "PYTHONUNBUFFERED": "1",
    }
    processes = WorkerProcesses(env, tmp_path)
    yield processes
    processes.stop_all()
    # Shown by pytest when the test failed.
    print(processes.logs())
