"""The site run as in production: honcho with the Procfile, supervisord with several workers."""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from scripts.pgcluster import free_port
from taskqueue.models import Status, Task, WorkerProcess
from tests.conftest import (
    PROJECT,
    READY_BUDGET,
    database_url,
    manage,
    recorded,
    wait_for_http,
    wait_until,
)
from tests.taskqueue import sample_queues as q

pytestmark = pytest.mark.slow
BIN = str(Path(sys.executable).parent)


@pytest.fixture
def site_env(production_env, transactional_db, record_file, tmp_path) -> dict[str, str]:
    """The real settings on the test database, with the virtualenv's programs on PATH."""
    return production_env | {
        "DATABASE_URL": database_url(),
        "PATH": f"{BIN}:{production_env['PATH']}",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        # plain HTTP on loopback, where TLS would end at a proxy in production
        "SECURE_SSL_REDIRECT": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SESSION_COOKIE_SECURE": "false",
        "TEST_RECORD_FILE": str(record_file),
        "WORKER_PROCESSES": "2",
        # as root: on purpose (the start script refuses root by default)
        "SITE_USER": getpass.getuser(),
    }


@contextlib.contextmanager
def started(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A process group of our own; whatever is left of it at the end is killed."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def group_is_empty(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_honcho_runs_web_and_worker_and_stops_both_on_sigterm(
    site_env, smtp_server, tmp_path
) -> None:
    port = site_env["PORT"]
    site_env["EMAIL_URL"] = smtp_server.url
    assert (
        manage("collectstatic", "--noinput", env=site_env).returncode == 0
    )  # the deploy step pages need
    with started(
        [f"{BIN}/honcho", "start", "--port", port], site_env, tmp_path / "honcho.log"
    ) as honcho:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process=honcho)
        wait_until(
            lambda: WorkerProcess.objects.count() == 1,
            timeout=READY_BUDGET,
            message="the worker registered",
        )
        submit_form(
            f"http://127.0.0.1:{port}/contact/",
            {"name": "Ada", "email": "ada@example.com", "message": "Sent through honcho"},
        )
        message = smtp_server.wait_for_message(timeout=20)
        assert "Sent through honcho" in message.get_body(("plain",)).get_content()
        honcho.send_signal(signal.SIGTERM)
        honcho.wait(timeout=45)
        wait_until(
            lambda: group_is_empty(honcho.pid),
            timeout=10,
            message="every process of the site ended",
        )
    assert not WorkerProcess.objects.exists(), "the worker shut down cleanly and deregistered"


def submit_form(url: str, data: dict[str, str]) -> None:
    """Fill in and post a form as a browser would: the page first, for its CSRF cookie and token."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    page = opener.open(url, timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode(data | {"csrfmiddlewaretoken": token}).encode()
    with opener.open(urllib.request.Request(url, data=body), timeout=10) as response:
        assert response.status == 200 and "your message reached us" in response.read().decode()


def supervisorctl(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [f"{BIN}/supervisorctl", "-c", "supervisord.conf", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout + result.stderr


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="supervisord is tested against PostgreSQL"
)
def test_supervisord_restarts_a_killed_worker_and_a_full_restart_loses_no_task(
    site_env, record_file, tmp_path
):
    command = [str(PROJECT / "scripts" / "supervisord-start")]
    with started(command, site_env, tmp_path / "supervisord.log") as supervisord:
        wait_for_http(f"http://127.0.0.1:{site_env['PORT']}/healthz", process=supervisord)
        wait_until(
            lambda: WorkerProcess.objects.count() == 2,
            timeout=READY_BUDGET,
            message="two workers registered",
        )

        victim = WorkerProcess.objects.order_by("pk").first()
        os.kill(victim.pid, signal.SIGKILL)
        wait_until(
            lambda: (
                victim.pid not in WorkerProcess.objects.values_list("pid", flat=True)
                and WorkerProcess.objects.count() == 2
            ),
            timeout=30,
            message="the killed worker was restarted",
        )

        ids = {info.id for info in q.RecordingQueue.add_tasks(range(400))}
        wait_until(lambda: len(recorded(record_file)) > 50, timeout=30, message="work under way")
        assert "RUNNING" in supervisorctl(site_env, "status")
        supervisorctl(site_env, "restart", "all")
        wait_until(
            lambda: Task.objects.filter(status=Status.SUCCEEDED).count() == 400,
            timeout=120,
            message="all done",
        )
        assert {int(line.split()[0]) for line in recorded(record_file)} == ids
    assert connection.vendor == "postgresql"


def run_start_script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROJECT / "scripts" / "supervisord-start")],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(os.getuid() != 0, reason="what happens when root starts the site")
def test_supervisord_start_as_root_refuses_unless_told_the_account_to_run_the_site_as(
    site_env, tmp_path
) -> None:
    env = {key: value for key, value in site_env.items() if key != "SITE_USER"}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'untouched.sqlite3'}"
    result = run_start_script(env)
    assert result.returncode == 2
    assert "started as root, so set SITE_USER to the unprivileged account" in result.stderr
    assert not (tmp_path / "untouched.sqlite3").exists(), "it stopped before migrating"


@pytest.mark.skipif(os.getuid() != 0, reason="what happens when root starts the site")
def test_supervisord_start_as_root_runs_everything_as_the_site_user(site_env, tmp_path) -> None:
    """It switches to SITE_USER before migrating: an account that does not exist stops it there."""
    env = site_env | {
        "SITE_USER": "no-such-site-user",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'untouched.sqlite3'}",
    }
    result = run_start_script(env)
    assert result.returncode != 0 and "no-such-site-user" in result.stderr
    assert not (tmp_path / "untouched.sqlite3").exists(), "nothing ran as root"


def test_supervisord_conf_needs_no_environment() -> None:
    """`supervisord -c supervisord.conf` works as written: supervisord has no defaults for
    %(ENV_...)s."""
    assert "%(ENV_" not in (PROJECT / "supervisord.conf").read_text()


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="supervisord is tested against PostgreSQL"
)
def test_supervisord_runs_as_written_and_supervisorctl_talks_to_it(site_env, tmp_path) -> None:
    env = {
        key: value
        for key, value in site_env.items()
        if key not in ("WORKER_PROCESSES", "SITE_USER")
    }
    assert manage("migrate", "-v0", env=env).returncode == 0
    assert manage("collectstatic", "--noinput", "-v0", env=env).returncode == 0
    with started(
        [f"{BIN}/supervisord", "-c", "supervisord.conf"], env, tmp_path / "supervisord.log"
    ) as supervisord:
        wait_for_http(f"http://127.0.0.1:{env['PORT']}/healthz", process=supervisord)
        wait_until(
            lambda: WorkerProcess.objects.count() == 2,
            timeout=READY_BUDGET,
            message="two workers registered",
        )
        status = supervisorctl(env, "status")
        assert "web" in status and "worker" in status and status.count("RUNNING") == 2, status
