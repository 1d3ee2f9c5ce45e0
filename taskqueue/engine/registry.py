"""The tasks the front doors declared: the only ones a worker runs and a schedule may name.

A task row names its task by a dotted path, and anyone who can write a row (or edit a recurring
task in the admin) chooses that path. Importing whatever a row names would run any importable
module's import-time code and call any importable function, so a path is looked up here first:
queue classes (`BaseQueue` subclasses), `@task` functions on this app's backend and `@shared_task`
functions declare themselves as their modules are imported, and a path no front door declared is
refused (`UndeclaredTask`) before anything is imported for it.

Which modules are imported is the deployment's choice, never a row's: the `tasks` module of every
installed app (as Celery's `autodiscover_tasks` does), and the modules listed in
`TASKQUEUE["TASK_MODULES"]`. Workers import them at start; another process does it the first time
it meets a path it does not know (and again for a module the settings add later).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.apps import apps
from django.utils.module_loading import module_has_submodule

from taskqueue.conf import configured
from taskqueue.exceptions import TaskModuleError, UndeclaredTask

logger = logging.getLogger("taskqueue.registry")

#: The submodule of each installed app that is imported to find its tasks.
APP_TASK_MODULE = "tasks"


@dataclass(frozen=True)
class Declared:
    """Where a declared task lives: its front door (the rows' `kind`), module and qualified name."""

    kind: str
    module: str
    qualname: str


_declared: dict[str, Declared] = {}
# Per kind, what a front door accepts from a task module without a declaration (see `accept`).
_accepted: dict[str, Callable[[Any], bool]] = {}
_discovery = threading.Lock()  # guards the bookkeeping below, never held while importing
_attempted: set[str] = set()  # task modules this process has imported, or tried to
_import_errors: dict[str, str] = {}


def declare(kind: str, module: str, qualname: str) -> str:
    """Called by the front doors as each task is defined; returns the task's path.

    Declaring again (a module reloaded, a django.tasks Task copied by `using()`) is harmless.
    Tasks defined inside functions are not declared: no worker could import them.
    """
    path = f"{module}.{qualname}"
    if "<locals>" not in qualname:
        _declared[path] = Declared(kind, module, qualname)
    return path


def accept(kind: str, check: Callable[[Any], bool]) -> None:
    """Let a front door run, for its `kind`, an object of a task module that was not declared to it
    but passes `check`: a django.tasks Task defined on another backend and enqueued here with
    `using()`. Only task modules already imported are looked in; nothing is imported for it."""
    _accepted[kind] = check


def declared(path: str, kind: str | None = None) -> Declared | None:
    """The declaration of `path`, looking through the task modules if it is not known yet."""
    if path not in _declared:
        autodiscover(raise_errors=False)
    if path not in _declared and kind in _accepted:
        _accept(path, kind)
    return _declared.get(path)


def _accept(path: str, kind: str) -> None:
    module, _, qualname = path.rpartition(".")
    while module and module not in _attempted:
        module, _, head = module.rpartition(".")
        qualname = f"{head}.{qualname}"
    if not module or module not in sys.modules:
        return
    target = _attribute(sys.modules[module], qualname)
    if target is not None and _accepted[kind](target):
        declare(kind, module, qualname)


def _attribute(target: Any, qualname: str) -> Any:
    for name in qualname.split("."):
        target = getattr(target, name, None)
        if target is None:
            return None
    return target


def resolve(path: str, kind: str | None = None) -> Any:
    """What a declared task's path names (queue class, task function), from its already imported
    module.

    Raises UndeclaredTask, saying why, for a path no front door declared (or declared for another
    kind than `kind`): nothing is imported for it.
    """
    declaration = declared(path, kind)
    if declaration is None:
        raise UndeclaredTask(undeclared_reason(path))
    if kind is not None and declaration.kind != kind:
        raise UndeclaredTask(
            f"{path} is declared as a {declaration.kind!r} task, not as a {kind!r} one."
        )
    _wait_for(declaration.module)
    loaded = sys.modules.get(declaration.module)
    if loaded is None:
        raise UndeclaredTask(
            f"{path} was declared, but its module {declaration.module} is no longer loaded."
        )
    target = _attribute(loaded, declaration.qualname)
    if target is None:
        raise UndeclaredTask(f"{path} was declared, but {declaration.module} no longer defines it.")
    return target


def _wait_for(module: str) -> None:
    """If another thread is still importing `module`, wait until it is done (a task is declared
    before its module binds its name). In the importing thread itself this returns at once."""
    loaded = sys.modules.get(module)
    if loaded is not None and getattr(getattr(loaded, "__spec__", None), "_initializing", False):
        with contextlib.suppress(Exception):  # its own failure is reported by its importer
            import_module(module)


def undeclared_reason(path: str) -> str:
    reason = (
        f"{path} is not a declared task: only queue classes, @task and @shared_task functions in "
        f"an installed app's {APP_TASK_MODULE} module or in a module listed in "
        "TASKQUEUE['TASK_MODULES'] run."
    )
    failed = [module for module in _import_errors if path.startswith(module + ".")]
    if failed:
        reason += f" Its module failed to import: {_import_errors[failed[0]]}"
    return reason


def task_modules() -> list[str]:
    """The modules that declare tasks: each installed app's `tasks` module, then TASK_MODULES."""
    found = [
        f"{config.name}.{APP_TASK_MODULE}"
        for config in apps.get_app_configs()
        if module_has_submodule(config.module, APP_TASK_MODULE)
    ]
    listed = configured("TASK_MODULES", ())
    if isinstance(listed, str) or not isinstance(listed, list | tuple):
        listed = ()  # the system checks report it
    return list(
        dict.fromkeys(
            [*found, *(module for module in listed if isinstance(module, str) and module)]
        )
    )


def autodiscover(raise_errors: bool = True) -> None:
    """Import the task modules not imported yet. A module that fails to import is reported (raised
    as TaskModuleError naming every failed module, or logged) and the others are still imported; it
    is not tried again in this process, as a failed import may have run part of the module.

    No lock is held while importing: a task module's import-time code may itself look up tasks, and
    another thread importing the same module waits for it in the import system, not here."""
    modules = task_modules()
    for module in modules:
        with _discovery:
            new = module not in _attempted
            _attempted.add(module)
        if new:
            try:
                import_module(module)
            except Exception as error:
                _import_errors[module] = f"{type(error).__name__}: {error}"
                logger.error("task module %s failed to import", module, exc_info=True)
        else:
            _wait_for(module)  # one another thread may be importing
    failed = {module: _import_errors[module] for module in modules if module in _import_errors}
    if failed and raise_errors:
        failures = "; ".join(f"{module}: {error}" for module, error in failed.items())
        raise TaskModuleError(f"Task modules failed to import, their tasks cannot run: {failures}")
