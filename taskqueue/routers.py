"""Keep the task queue's tables on a database of their own: TASKQUEUE["DATABASE"] names its alias.

    DATABASES = {"default": {...}, "queue": {...}}
    DATABASE_ROUTERS = ["taskqueue.routers.TaskQueueRouter"]
    TASKQUEUE = {"DATABASE": "queue"}

Then `python manage.py migrate taskqueue --database queue`. Enqueueing can no longer join the
transaction that writes your rows: use `enqueue_on_commit` for tasks that depend on them.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model

from taskqueue.conf import database_alias

APP = "taskqueue"


class TaskQueueRouter:
    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return database_alias() if model._meta.app_label == APP else None

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return database_alias() if model._meta.app_label == APP else None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        if obj1._meta.app_label == APP and obj2._meta.app_label == APP:
            return True
        return None

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if app_label == APP:
            return db == database_alias()
        return None
