"""`python manage.py taskqueue_prune`: delete finished tasks, by age, queue, task path and status.

Workers already delete successful tasks past RESULT_RETENTION; this is for the rest (failed and
cancelled tasks stay until someone acts) and for one-off clean-ups. Waiting and running tasks are
never pruned. --dry-run counts without deleting.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import router
from django.utils import timezone

from taskqueue.models import FINISHED, Status, Task

BATCH = 1000


class Command(BaseCommand):
    help = "Delete finished tasks older than a given age (successful ones by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", type=float, default=86400.0, help="Finished more than S seconds ago."
        )
        parser.add_argument("--queue", help="Only this queue.")
        parser.add_argument("--task-path", help="Only tasks of this dotted path.")
        parser.add_argument(
            "--status",
            action="append",
            choices=[str(status) for status in FINISHED],
            help="Statuses to delete (repeatable; default: succeeded).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")

    def handle(
        self,
        *args: Any,
        older_than: float,
        queue: str | None,
        task_path: str | None,
        status: list[str] | None,
        dry_run: bool,
        **options: Any,
    ) -> None:
        if older_than < 0:
            raise CommandError("--older-than must be zero or more.")
        using = router.db_for_write(Task)
        tasks = Task.objects.using(using).filter(
            status__in=status or [Status.SUCCEEDED],
            finished_at__lt=timezone.now() - timedelta(seconds=older_than),
        )
        if queue:
            tasks = tasks.filter(queue_name=queue)
        if task_path:
            tasks = tasks.filter(task_path=task_path)
        if dry_run:
            self.stdout.write(f"Would delete {tasks.count()} task(s).")
            return
        deleted = 0
        # In batches, so no statement holds its locks for long on a big table.
        while ids := list(tasks.values_list("pk", flat=True)[:BATCH]):
            deleted += Task.objects.using(using).filter(pk__in=ids).delete()[0]
        self.stdout.write(f"Deleted {deleted} task(s).")
