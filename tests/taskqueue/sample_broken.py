"""A task module that fails to import: a worker listing it in TASKQUEUE["TASK_MODULES"] must not
start."""

raise RuntimeError("this task module is broken on purpose")
