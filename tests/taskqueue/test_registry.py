"""Only declared tasks run or are scheduled: a path is checked before anything is imported for it.

`sample_gadget` is an importable module that declares no task and records when it is imported or
called: a row or a schedule naming it must do neither, in a worker process or in the web process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from django.core import checks
from django.core.management import CommandError, call_command
from django.tasks import default_task_backend
from django.test import Client, override_settings
from django.urls import reverse

from taskqueue import recurring
from taskqueue.engine import registry
from taskqueue.exceptions import TaskQueueError, UndeclaredTask
from taskqueue.models import RecurringTask, Status, Task
from tests.conftest import wait_until
from tests.taskqueue import sample_celery, sample_tasks
from tests.taskqueue import sample_queues as q

GADGET = "tests.taskqueue.sample_gadget"
UNDECLARED = "taskqueue.exceptions.UndeclaredTask"


def recorded(record_file: Path) -> list[str]:
    return record_file.read_text().splitlines() if record_file.exists() else []


@pytest.fixture(autouse=True)
def gadget_not_imported_here():
    """The gadget must not be imported by this process: not before a test (it would prove nothing),
    nor by it."""
    assert GADGET not in sys.modules
    yield
    assert GADGET not in sys.modules, "the registry imported a module no task declared"


def test_a_worker_fails_undeclared_paths_without_importing_or_calling_them(
    workers, record_file, tmp_path
) -> None:
    touched = tmp_path / "touched"
    rows = {
        "queue": q.RecordingQueue.add_task("x").id,
        "celery": int(sample_celery.multiply.delay(2, 3).id),
        "django": int(sample_tasks.echo.enqueue("x").id),
        "shell": int(sample_celery.multiply.delay(f"touch {touched}").id),
    }
    Task.objects.filter(pk=rows["queue"]).update(task_path=f"{GADGET}.Process")
    Task.objects.filter(pk=rows["celery"]).update(task_path=f"{GADGET}.run")
    Task.objects.filter(pk=rows["django"]).update(task_path=f"{GADGET}.run")
    Task.objects.filter(pk=rows["shell"]).update(
        task_path="os.system"
    )  # a stdlib gadget, already imported
    workers.start("--queues", "*", "--interval", "0.2")
    wait_until(
        lambda: (
            Task.objects.filter(pk__in=rows.values(), status=Status.FAILED).count() == len(rows)
        ),
        timeout=30,
        message="the worker failed every undeclared task",
    )
    assert not any(line.startswith("gadget") for line in recorded(record_file)), recorded(
        record_file
    )
    assert not touched.exists()
    for task in Task.objects.filter(pk__in=rows.values()):
        assert task.last_error["exc_class"] == UNDECLARED
        assert task.last_error["message"].startswith(f"{task.task_path} is not a declared task")
        assert "TASKQUEUE['TASK_MODULES']" in task.last_error["message"]


def test_a_worker_runs_the_tasks_of_its_task_modules_and_no_others(workers, record_file) -> None:
    listed = q.RecordingQueue.add_task("listed")
    workers.start("--queues", "recording", "--interval", "0.2")
    wait_until(
        lambda: f"{listed.id}" in {line.split()[0] for line in recorded(record_file)},
        timeout=30,
        message="the listed module's task ran",
    )
    workers.stop_all()

    unlisted = q.RecordingQueue.add_task("unlisted")
    workers.start("--queues", "recording", "--interval", "0.2", TASKQUEUE_TASK_MODULES="")
    wait_until(
        lambda: Task.objects.get(pk=unlisted.id).status == Status.FAILED,
        timeout=30,
        message="a worker that was not given the module failed its task",
    )
    assert not any(line.endswith(" unlisted") for line in recorded(record_file))
    assert Task.objects.get(pk=listed.id).status == Status.SUCCEEDED


def test_a_worker_whose_task_module_fails_to_import_does_not_start(workers) -> None:
    queued = q.RecordingQueue.add_task("waits")
    worker = workers.start(TASKQUEUE_TASK_MODULES="tests.taskqueue.sample_broken")
    assert worker.wait(timeout=30) != 0
    log = Path(worker.log_path).read_text()  # type: ignore[attr-defined]
    assert (
        "tests.taskqueue.sample_broken: RuntimeError: this task module is broken on purpose" in log
    )
    assert Task.objects.get(pk=queued.id).status == Status.READY  # nothing claimed, nothing lost


@pytest.mark.django_db
def test_a_row_naming_a_task_of_another_front_door_fails(drain) -> None:
    info = sample_celery.multiply.delay(2, 3)
    Task.objects.filter(pk=int(info.id)).update(task_path="tests.taskqueue.sample_queues.NoOpQueue")
    assert drain() == 1
    task = Task.objects.get(pk=int(info.id))
    assert (task.status, task.last_error["exc_class"]) == (Status.FAILED, UNDECLARED)
    assert "is declared as a 'queue' task, not as a 'celery' one" in task.last_error["message"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", [f"{GADGET}.run", f"{GADGET}.Process", "os.system", "subprocess.run"]
)
def test_a_schedule_naming_an_undeclared_path_is_refused_without_importing_it(path: str) -> None:
    with pytest.raises(UndeclaredTask, match="is not a declared task"):
        recurring.schedule_recurring("gadget", path, "* * * * *", args=["touch /tmp/never"])
    assert not RecurringTask.objects.exists()


@pytest.mark.django_db
def test_staff_who_edit_recurring_tasks_cannot_point_one_at_an_undeclared_path(
    admin_client: Client,
) -> None:
    page = admin_client.post(
        reverse("admin:taskqueue_recurringtask_add"),
        {
            "key": "gadget",
            "task_path": f"{GADGET}.run",
            "schedule": "* * * * *",
            "timezone": "UTC",
            "args": "[]",
            "kwargs": "{}",
            "enabled": "on",
        },
    )
    assert page.status_code == 200
    assert f"{GADGET}.run is not a declared task" in page.text
    assert not RecurringTask.objects.exists()


@pytest.mark.django_db
def test_a_stored_schedule_naming_an_undeclared_path_records_why_and_runs_nothing() -> None:
    RecurringTask.objects.create(
        key="gadget",
        task_path=f"{GADGET}.run",
        schedule="* * * * *",
        created_at="2026-11-21T00:00:00Z",
    )
    assert recurring.run_due() == 0
    assert RecurringTask.objects.get().last_error.startswith(
        f"UndeclaredTask: {GADGET}.run is not a declared task"
    )
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_the_result_of_a_row_naming_an_undeclared_path_is_refused() -> None:
    result = sample_tasks.echo.enqueue("x")
    Task.objects.filter(pk=int(result.id)).update(task_path=f"{GADGET}.run")
    with pytest.raises(UndeclaredTask):
        default_task_backend.get_result(result.id)


def test_task_modules_are_each_installed_apps_tasks_module_then_the_listed_ones() -> None:
    modules = registry.task_modules()
    assert modules[:2] == ["apps.emails.tasks", "apps.reports.tasks"]
    assert "tests.taskqueue.sample_queues" in modules and GADGET not in modules


def test_the_front_doors_declare_their_tasks_as_they_are_defined() -> None:
    kinds = {
        "tests.taskqueue.sample_queues.NoOpQueue": "queue",
        "tests.taskqueue.sample_tasks.echo": "django",
        "tests.taskqueue.sample_celery.multiply": "celery",
        "apps.emails.tasks.WelcomeEmailQueue": "queue",
        "apps.reports.tasks.build_report": "django",
        "apps.emails.tasks.notify_team_of_contact": "celery",
    }
    for path, kind in kinds.items():
        declared = registry.declared(path)
        assert declared is not None and declared.kind == kind, path
    assert registry.resolve("tests.taskqueue.sample_queues.NoOpQueue") is q.NoOpQueue


@pytest.mark.parametrize(
    ("modules", "error"),
    [
        ("tests.taskqueue.sample_queues", "must be a list of module names"),
        (["tests.taskqueue.sample_queues", 7], "must be a list of module names"),
        (
            ["tests.taskqueue.no_such_module"],
            "names 'tests.taskqueue.no_such_module', which is not an importable",
        ),
    ],
)
@pytest.mark.django_db
def test_bad_task_modules_are_reported_at_start_up(settings, modules: object, error: str) -> None:
    with override_settings(TASKQUEUE={**settings.TASKQUEUE, "TASK_MODULES": modules}):
        messages = [
            message.msg for message in checks.run_checks() if message.id.startswith("taskqueue.")
        ]
        assert any(error in message for message in messages), messages


def test_a_worker_refuses_to_start_when_a_listed_task_module_is_missing(settings) -> None:
    missing = {**settings.TASKQUEUE, "TASK_MODULES": ["tests.taskqueue.no_such_module"]}
    refused = pytest.raises(
        CommandError, match=r"tests\.taskqueue\.no_such_module: ModuleNotFoundError"
    )
    with override_settings(TASKQUEUE=missing), refused:
        call_command("taskqueue_worker", "--only-schedule")


def test_tasks_defined_inside_functions_are_not_declared() -> None:
    assert (
        registry.declare("queue", __name__, "outer.<locals>.Inner")
        == f"{__name__}.outer.<locals>.Inner"
    )
    assert registry.declared(f"{__name__}.outer.<locals>.Inner") is None
    with pytest.raises(TaskQueueError):
        registry.resolve(f"{__name__}.outer.<locals>.Inner")
