"""The `taskqueue` folder stands alone: copied into a project that `django-admin startproject` just
made, set up as taskqueue/README.md says, it runs a task through each front door with a real
worker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT

pytestmark = pytest.mark.slow

TASKS = """
import os

from django.tasks import task

from taskqueue import BaseQueue, TaskInfo
from taskqueue.celery import shared_task


def record(line):
    with open(os.environ["RECORD"], "a") as out:
        out.write(line + "\\n")


class Greeting(BaseQueue[str]):
    queue_name = "default"

    @classmethod
    def process(cls, task_info: TaskInfo[str]) -> None:
        record(f"queue class: hello {task_info.get_arg()}")


@task
def add(a: int, b: int) -> int:
    record(f"django.tasks: {a + b}")
    return a + b


@shared_task
def multiply(a: int, b: int) -> int:
    record(f"celery-style: {a * b}")
    return a * b
"""

# What taskqueue/README.md's "add it to your project" recipe has a project add to its settings.
SETTINGS = """
INSTALLED_APPS += ["taskqueue", "jobs"]
TASKS = {"default": {"BACKEND": "taskqueue.backend.DatabaseBackend"}}
DATABASES["default"]["OPTIONS"] = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}
"""

ENQUEUE = """
from jobs.tasks import Greeting, add, multiply
Greeting.add_task("world")
print("django", add.enqueue(2, 3).id)
print("celery", multiply.delay(4, 5).id)
"""

RESULTS = """
from jobs.tasks import add
from taskqueue.celery import AsyncResult
print(add.get_result("{django}").return_value, AsyncResult("{celery}").get(timeout=5))
"""


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


def test_the_folder_runs_every_front_door_in_a_fresh_startproject(tmp_path: Path) -> None:
    project = tmp_path / "fresh"
    project.mkdir()
    record = tmp_path / "record.txt"
    # The interpreter's own packages (Django, croniter) and nothing of this site: no PYTHONPATH to
    # it.
    env = {
        key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG", "TMPDIR")
    }
    env |= {"RECORD": str(record), "PYTHONUNBUFFERED": "1"}
    python = sys.executable
    run([python, "-m", "django", "startproject", "mysite", str(project)], tmp_path, env)
    shutil.copytree(
        PROJECT / "taskqueue", project / "taskqueue", ignore=shutil.ignore_patterns("__pycache__")
    )
    run([python, "manage.py", "startapp", "jobs"], project, env)
    (project / "jobs" / "tasks.py").write_text(TASKS)
    with open(project / "mysite" / "settings.py", "a") as settings:
        settings.write(SETTINGS)

    run([python, "manage.py", "check"], project, env)
    run([python, "manage.py", "migrate", "-v0"], project, env)
    enqueued = run([python, "manage.py", "shell", "-c", ENQUEUE], project, env).stdout.splitlines()
    ids = dict(line.split() for line in enqueued if line.startswith(("django ", "celery ")))
    run([python, "manage.py", "taskqueue_worker", "--burst"], project, env)

    assert sorted(record.read_text().splitlines()) == [
        "celery-style: 20",
        "django.tasks: 5",
        "queue class: hello world",
    ]
    script = RESULTS.format(django=ids["django"], celery=ids["celery"])
    results = run([python, "manage.py", "shell", "-c", script], project, env)
    assert results.stdout.splitlines()[-1].split() == ["5", "20"]
