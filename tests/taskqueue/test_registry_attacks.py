"""Attempts to break the declared-task registry (taskqueue/engine/registry.py), from a review: the
first four were findings that failed on the first version (fixed since), the rest are properties
kept.

Registry state is process-global: the `isolated_registry` fixture gives each test a copy of it, so
declarations, attempted modules and import errors made by a test are undone afterwards.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.tasks import default_task_backend
from django.tasks.exceptions import TaskResultDoesNotExist
from django.test import Client, override_settings
from django.urls import reverse

from taskqueue import recurring
from taskqueue.celery import AsyncResult
from taskqueue.engine import registry
from taskqueue.exceptions import UndeclaredTask
from taskqueue.models import RecurringTask, Status, Task
from tests.conftest import PROJECT
from tests.taskqueue import sample_queues as q
from tests.taskqueue import sample_tasks

GADGET = "tests.taskqueue.sample_gadget"
UNDECLARED = "taskqueue.exceptions.UndeclaredTask"
SUBPROCESS_TIMEOUT = 60


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch: pytest.MonkeyPatch):
    """Each test works on copies of the registry's state (and the gadget must never get
    imported)."""
    registry.autodiscover(
        raise_errors=False
    )  # the suite's own task modules, once, before the copies
    monkeypatch.setattr(registry, "_declared", dict(registry._declared))
    monkeypatch.setattr(registry, "_attempted", set(registry._attempted))
    monkeypatch.setattr(registry, "_import_errors", dict(registry._import_errors))
    assert GADGET not in sys.modules
    yield
    assert GADGET not in sys.modules, "something imported a module no task declared"


@pytest.fixture
def task_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A folder on sys.path for throw-away task modules; the modules written there are unloaded
    after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        importlib.invalidate_caches()
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


def listing(*modules: str):
    """override_settings adding `modules` to TASKQUEUE['TASK_MODULES']."""
    from django.conf import settings

    current = dict(settings.TASKQUEUE)
    return override_settings(
        TASKQUEUE={**current, "TASK_MODULES": [*current.get("TASK_MODULES", []), *modules]}
    )


# ------------------------------------------------------------------------------------------------
# Finding 1 (fixed): a task module whose import-time code looks up a task path not declared yet
# deadlocked autodiscover while `_discovery` was held across import_module.
# ------------------------------------------------------------------------------------------------


def test_autodiscover_does_not_deadlock_when_a_task_module_looks_up_a_task_at_import(
    tmp_path: Path,
) -> None:
    (tmp_path / "reentrant_a.py").write_text(
        textwrap.dedent(
            """
            from taskqueue import recurring
            from taskqueue.queues import BaseQueue

            class AQueue(BaseQueue):
                pass

            # e.g. a module checking, as it loads, that a schedule it relies on names a real task
            recurring.validate({"task_path": "reentrant_b.BQueue", "schedule": "0 3 * * *"})
            """
        )
    )
    (tmp_path / "reentrant_b.py").write_text(
        "from taskqueue.queues import BaseQueue\n\nclass BQueue(BaseQueue):\n    pass\n"
    )
    script = textwrap.dedent(
        """
        import django
        django.setup()
        from django.conf import settings
        settings.TASKQUEUE["TASK_MODULES"] = ["reentrant_a", "reentrant_b"]
        from taskqueue.engine import registry
        registry.autodiscover()
        print("discovered", registry.declared("reentrant_b.BQueue") is not None)
        """
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "PYTHONPATH": f"{tmp_path}:{PROJECT}",
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=PROJECT,
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            "autodiscover deadlocked: the module's import-time lookup re-entered the held "
            "_discovery Lock"
        )
    assert done.returncode == 0, done.stderr
    assert "discovered True" in done.stdout


# ------------------------------------------------------------------------------------------------
# Finding 2 (fixed): a django.tasks task declared on another backend and enqueued here through
# `.using(backend="default")` is refused by workers: the worker only imports the module, whose @task
# calls the *other* backend's validate_task, so the path is never declared in the worker. It ran
# before the change.
# ------------------------------------------------------------------------------------------------

OTHER_BACKEND = {
    "default": {"BACKEND": "taskqueue.backend.DatabaseBackend", "QUEUES": [], "OPTIONS": {}},
    "other": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"},
}


@pytest.mark.django_db
def test_a_task_of_another_backend_enqueued_here_with_using_runs(task_dir, drain, settings) -> None:
    name = task_dir(
        "attack_other_backend",
        """
        from django.tasks import task

        @task(backend="other")
        def ping(word):
            return word
        """,
    )
    path = f"{name}.ping"
    with override_settings(TASKS=OTHER_BACKEND), listing(name):
        registry.autodiscover()
        # what a worker has after importing its task modules
        worker_knows = registry.declared(path) is not None
        # the web process: declares it here
        result = sys.modules[name].ping.using(backend="default").enqueue("hi")
        registry._declared.pop(
            path
        )  # ... but not in the worker, which never called this backend's validate_task
        assert drain() == 1
    row = Task.objects.get(pk=int(result.id))
    assert row.status == Status.SUCCEEDED, (worker_knows, row.last_error)


# ------------------------------------------------------------------------------------------------
# Finding 3 (fixed): the django backend's get_result raises UndeclaredTask (not
# TaskResultDoesNotExist) for a row whose path is undeclared; callers written against django.tasks
# catch only the latter, so e.g. the reports demo's pages 500 for the report's owner.
# ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_report_whose_task_row_names_an_undeclared_path_still_renders() -> None:
    from apps.reports.models import Report
    from apps.reports.tasks import build_report

    owner = User.objects.create_user("ada", "ada@example.com", "pw-long-enough-1234")
    report = Report.objects.create(owner=owner, year=2024, months=3)
    report.task_id = build_report.enqueue(report.pk).id
    report.save(update_fields=["task_id"])
    Task.objects.filter(pk=int(report.task_id)).update(
        task_path=f"{GADGET}.run"
    )  # whoever can write the table

    client = Client(raise_request_exception=False)
    client.force_login(owner)
    for url in (reverse("reports:detail", args=[report.pk]), reverse("reports:list")):
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_get_result_of_an_undeclared_row_is_a_result_that_does_not_exist() -> None:
    result = sample_tasks.echo.enqueue("x")
    Task.objects.filter(pk=int(result.id)).update(task_path=f"{GADGET}.run")
    with pytest.raises(
        TaskResultDoesNotExist
    ):  # UndeclaredTask could subclass it (the existing test still holds)
        default_task_backend.get_result(result.id)


# ------------------------------------------------------------------------------------------------
# Finding 4 (fixed): a task declared while its module is still being imported (declare() runs
# from __init_subclass__ / the decorator, before the name is bound) is refused for good by another
# thread that looks it up in that window ("no longer defines it"); resolve should wait for the
# import.
# ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_resolve_waits_for_a_task_module_another_thread_is_importing(task_dir, monkeypatch) -> None:
    gate = types.ModuleType("attack_gate")
    gate.declared, gate.release = threading.Event(), threading.Event()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "attack_gate", gate)
    name = task_dir(
        "attack_slow_module",
        """
        import attack_gate
        from taskqueue.queues import BaseQueue

        def registered_slowly(cls):  # a class decorator doing some work (a lookup, a registration)
            attack_gate.declared.set()
            attack_gate.release.wait(10)
            return cls

        @registered_slowly
        class LateQueue(BaseQueue):
            @classmethod
            def process(cls, task_info):
                return None
        """,
    )
    importer = threading.Thread(target=importlib.import_module, args=(name,), daemon=True)
    importer.start()
    try:
        assert gate.declared.wait(10)
        threading.Timer(0.5, gate.release.set).start()
        resolved = registry.resolve(f"{name}.LateQueue", "queue")
    finally:
        gate.release.set()
        importer.join(10)
    assert resolved is sys.modules[name].LateQueue


# ------------------------------------------------------------------------------------------------
# Kept: TASKQUEUE_TASK_MODULES="a, b" (a space after the comma) is stripped by the site's
# environment reader (plain django-environ would give ' b', and every worker would refuse to start).
# ------------------------------------------------------------------------------------------------


def test_task_modules_from_the_environment_are_stripped(production_env) -> None:
    env = production_env | {
        "TASKQUEUE_TASK_MODULES": "tests.taskqueue.sample_queues, tests.taskqueue.sample_tasks"
    }
    script = (
        "from django.conf import settings; import django; django.setup(); "
        "print(settings.TASKQUEUE['TASK_MODULES'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip() == "['tests.taskqueue.sample_queues', 'tests.taskqueue.sample_tasks']"
    )


# ------------------------------------------------------------------------------------------------
# Kept: odd paths are refused without importing anything, and fail their rows without harm.
# ------------------------------------------------------------------------------------------------

ODD_PATHS = [
    "builtins.eval",
    "os.system",
    "subprocess.run",
    "",
    ".",
    "..",
    "a..b",
    ".tests.taskqueue.sample_queues.NoOpQueue",
    "tests.taskqueue.sample_queues.NoOpQueue.",
    "tests.taskqueue.sample_queues.NoOpQueue.process",  # an attribute of a declared class
    "tests.taskqueue.sample_queues.NoOpQueue.__init_subclass__",
    "tests.taskqueue.sample_queues.os.system",  # through a declared task's module
    "tests.taskqueue.sample_queues.<locals>.X",
    "tests.taskqueue.sample_queues.f.<locals>.NoOpQueue",
    "__main__.main",
    f"{GADGET}.run",
    f"{GADGET}",
    "tests.taskqueue.sample_queues.NoOpQueue\x00",
    "tests.taskqueue.sample_queues.NoOpQueue ",
    "tests.taskqueue.sample_queues.\uff2eoOpQueue",  # a fullwidth N (NFKC-equal to an identifier)
    "x." * 50_000 + "y",
]


@pytest.mark.parametrize("path", ODD_PATHS, ids=lambda p: repr(p[:60]))
def test_odd_paths_are_refused_without_importing_anything(path: str) -> None:
    before = set(sys.modules)
    for kind in (None, "queue", "django", "celery"):
        with pytest.raises(UndeclaredTask):
            registry.resolve(path, kind)
    with pytest.raises(UndeclaredTask):
        recurring.validate({"task_path": path, "schedule": "* * * * *"})
    assert set(sys.modules) == before


@pytest.mark.django_db
def test_rows_with_odd_paths_and_kinds_fail_alone_in_a_worker_thread(drain) -> None:
    ids = []
    # PostgreSQL stores no NUL character in a text column: such a row cannot exist there.
    storable = [
        path for path in ODD_PATHS[:-1] if "\x00" not in path or connection.vendor != "postgresql"
    ]
    for kind in ("queue", "django", "celery", "no-such-kind", ""):
        for path in storable:
            info = q.NoOpQueue.add_task(None)
            Task.objects.filter(pk=info.id).update(task_path=path, kind=kind)
            ids.append(info.id)
    assert drain() == len(ids)
    failed = Task.objects.filter(pk__in=ids, status=Status.FAILED)
    assert failed.count() == len(ids)
    assert GADGET not in sys.modules


# ------------------------------------------------------------------------------------------------
# Kept: admin, dashboard and the result objects show rows with undeclared paths without importing
# them.
# ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_pages_and_results_of_undeclared_rows_import_nothing(admin_client: Client, drain) -> None:
    queued = q.NoOpQueue.add_task(None)
    failed = q.NoOpQueue.add_task(None)
    Task.objects.filter(pk__in=[queued.id, failed.id]).update(task_path=f"{GADGET}.Process")
    Task.objects.filter(pk=failed.id).update(kind="celery")
    assert drain() == 2
    Task.objects.filter(pk=queued.id).update(status=Status.READY)  # a waiting (editable) one too
    RecurringTask.objects.create(
        key="gadget",
        task_path=f"{GADGET}.run",
        schedule="* * * * *",
        created_at="2026-11-21T00:00:00Z",
    )
    gadget_schedule = RecurringTask.objects.get()
    urls = [
        reverse("admin:taskqueue_task_changelist"),
        reverse("admin:taskqueue_task_changelist") + "?q=sample_gadget",
        reverse("admin:taskqueue_task_change", args=[queued.id]),
        reverse("admin:taskqueue_task_change", args=[failed.id]),
        reverse("admin:taskqueue_recurringtask_changelist"),
        reverse("admin:taskqueue_recurringtask_change", args=[gadget_schedule.pk]),
        reverse("admin:taskqueue_dashboard"),
    ]
    for url in urls:
        assert admin_client.get(url).status_code == 200, url
    page = admin_client.post(
        reverse("admin:taskqueue_recurringtask_changelist"),
        {"action": "run_now", "_selected_action": [gadget_schedule.pk]},
        follow=True,
    )
    assert page.status_code == 200 and "Not enqueued: gadget (UndeclaredTask" in page.text
    page = admin_client.post(
        reverse("admin:taskqueue_recurringtask_change", args=[gadget_schedule.pk]),
        {
            "key": "gadget",
            "task_path": f"{GADGET}.run",
            "schedule": "* * * * *",
            "timezone": "UTC",
            "args": "[]",
            "kwargs": "{}",
        },
    )
    assert page.status_code == 200 and "is not a declared task" in page.text
    result = AsyncResult(str(failed.id))
    assert (result.status, result.result.exc_class) == ("FAILURE", UNDECLARED)


# ------------------------------------------------------------------------------------------------
# Kept: legitimately declared tasks still run (no false refusals for these shapes).
# ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_nested_abstract_reloaded_and_twice_listed_task_modules_run(
    task_dir, drain, record_file
) -> None:
    name = task_dir(
        "attack_shapes",
        """
        from taskqueue.queues import BaseQueue
        from tests.taskqueue.sample_queues import record

        class Abstract(BaseQueue):
            queue_name = "shapes"

        class Concrete(Abstract):
            queue_name = "shapes"

            @classmethod
            def process(cls, task_info):
                record(f"concrete {task_info.get_arg()}")

        class Outer:
            class Inner(BaseQueue):
                queue_name = "shapes"

                @classmethod
                def process(cls, task_info):
                    record(f"inner {task_info.get_arg()}")
        """,
    )
    with listing(name, name, name + ""):  # listed three times
        assert registry.task_modules().count(name) == 1
        registry.autodiscover()
        module = sys.modules[name]
        module.Concrete.add_task("a")
        module.Outer.Inner.add_task("b")
        importlib.reload(module)  # a module reloaded: the new classes are the declared ones
        module.Concrete.add_task("c")
        abstract = module.Abstract.add_task("d")
        assert drain("shapes") == 4
    lines = record_file.read_text().splitlines()
    assert {"concrete a", "inner b", "concrete c"} <= set(lines)
    row = Task.objects.get(pk=abstract.id)
    assert (row.status, row.last_error["exc_class"]) == (
        Status.FAILED,
        "builtins.NotImplementedError",
    )


@pytest.mark.django_db
def test_using_copies_of_django_tasks_run(drain) -> None:
    result = sample_tasks.echo.using(queue_name="default", priority=7).enqueue("copied")
    assert drain() == 1
    assert Task.objects.get(pk=int(result.id)).status == Status.SUCCEEDED
    assert sample_tasks.echo.using(priority=3).get_result(result.id).return_value == {
        "args": ["copied"],
        "kwargs": {},
    }


def test_task_modules_given_in_the_backends_options_are_imported(settings) -> None:
    tasks = {
        "default": {
            **settings.TASKS["default"],
            "OPTIONS": {"TASK_MODULES": ["tests.taskqueue.sample_limits"]},
        }
    }
    with override_settings(TASKS=tasks):
        assert "tests.taskqueue.sample_limits" in registry.task_modules()


def test_autodiscover_imports_only_modules_the_settings_name() -> None:
    """Whatever paths are looked up, only apps' tasks modules and TASK_MODULES are imported."""
    allowed = set(registry.task_modules())
    registry._attempted.clear()
    imported: list[str] = []
    real = registry.import_module
    registry.import_module = lambda module: imported.append(module) or real(module)  # type: ignore[assignment]
    try:
        for path in (f"{GADGET}.run", "apps.emails.views.x", "django.core.management.call_command"):
            assert registry.declared(path) is None
    finally:
        registry.import_module = real  # type: ignore[assignment]
    assert imported and set(imported) <= allowed
