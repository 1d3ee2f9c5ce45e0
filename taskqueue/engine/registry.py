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

import logging
import sys
import threading
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
_discovery = threading.Lock()
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


def declared(path: str) -> Declared | None:
    """The declaration of `path`, looking through the task modules once if it is not known yet."""
    if path not in _declared:
        autodiscover(raise_errors=False)
    return _declared.get(path)


def resolve(path: str, kind: str | None = None) -> Any:
    """What a declared task's path names (queue class, task function), from its already imported module.

    Raises UndeclaredTask, saying why, for a path no front door declared (or declared for another kind
    than `kind`): nothing is imported for it.
    """
    declaration = declared(path)
    if declaration is None:
        raise UndeclaredTask(undeclared_reason(path))
    if kind is not None and declaration.kind != kind:
        raise UndeclaredTask(f"{path} is declared as a {declaration.kind!r} task, not as a {kind!r} one.")
    target: Any = sys.modules.get(declaration.module)
    if target is None:
        raise UndeclaredTask(f"{path} was declared, but its module {declaration.module} is no longer loaded.")
    try:
        for name in declaration.qualname.split("."):
            target = getattr(target, name)
    except AttributeError:
        raise UndeclaredTask(f"{path} was declared, but {declaration.module} no longer defines it.") from None
    return target


def undeclared_reason(path: str) -> str:
    reason = (
        f"{path} is not a declared task: only queue classes, @task and @shared_task functions in an installed "
        f"app's {APP_TASK_MODULE} module or in a module listed in TASKQUEUE['TASK_MODULES'] run."
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
    return list(dict.fromkeys([*found, *(module for module in listed if isinstance(module, str) and module)]))


def autodiscover(raise_errors: bool = True) -> None:
    """Import the task modules not imported yet. A module that fails to import is reported (raised as
    TaskModuleError naming every failed module, or logged) and the others are still imported; it is
    not tried again in this process, as a failed import may have run part of the module."""
    modules = task_modules()
    with _discovery:
        for module in modules:
            if module not in _attempted:
                _attempted.add(module)
                try:
                    import_module(module)
                except Exception as error:
                    _import_errors[module] = f"{type(error).__name__}: {error}"
                    logger.error("task module %s failed to import", module, exc_info=True)
    failed = {module: _import_errors[module] for module in modules if module in _import_errors}
    if failed and raise_errors:
        failures = "; ".join(f"{module}: {error}" for module, error in failed.items())
        raise TaskModuleError(f"Task modules failed to import, their tasks cannot run: {failures}")
