import importlib.util

from django.core.checks import Error, register

from taskqueue.conf import configured, read_settings


@register()
def check_settings(app_configs, **kwargs) -> list[Error]:
    """Bad TASKQUEUE values stop `manage.py` commands with a clear error, one per value, not a
    worker crash later."""
    _, found = read_settings()
    return [
        Error(message, hint="TASKQUEUE settings: see docs/settings.md.", id="taskqueue.E001")
        for message in found
    ]


@register()
def check_task_modules(app_configs, **kwargs) -> list[Error]:
    """Every TASKQUEUE["TASK_MODULES"] entry names a module that exists (found, not imported: a task
    module's imports may need the app registry that checks run before)."""
    modules = configured("TASK_MODULES", ())
    if isinstance(modules, str) or not isinstance(modules, list | tuple):
        return []  # check_settings reports the shape
    errors = []
    for module in modules:
        if not isinstance(module, str) or not module:
            continue
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            errors.append(
                Error(
                    f"TASKQUEUE['TASK_MODULES'] names {module!r}, "
                    "which is not an importable module.",
                    hint=(
                        "List the dotted names of modules that define queue classes, "
                        "@task or @shared_task."
                    ),
                    id="taskqueue.E004",
                )
            )
    return errors
