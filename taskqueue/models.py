"""The engine's tables: tasks (live and finished in one table) and the worker processes serving
them."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q

from taskqueue.serialization import error_entries


class Status(models.TextChoices):
    READY = "ready", "Ready"  # waiting; "scheduled" when run_at is in the future
    BLOCKED = "blocked", "Blocked"  # waiting for a concurrency slot
    RUNNING = "running", "Running"  # claimed by a worker process
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


UNFINISHED = (Status.READY, Status.RUNNING, Status.BLOCKED)
FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)


class Task(models.Model):
    """One unit of work, from enqueue to its outcome.

    `kind` names the front door that enqueued it (queue class, django.tasks, Celery-style) and so
    the executor that runs it; the engine itself never looks inside `payload`.
    """

    kind = models.CharField(max_length=16)
    task_path = models.CharField(
        max_length=255, help_text="Dotted path of the queue class or task function."
    )
    queue_name = models.CharField(max_length=100, default="default")
    payload = models.JSONField(default=dict, help_text="The arguments, as stored JSON.")
    note = models.TextField(blank=True, default="")
    priority = models.SmallIntegerField(default=0, help_text="Higher runs first.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.READY)
    dupe_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 - NULL: no key, not unique

    enqueued_at = models.DateTimeField()
    run_at = models.DateTimeField(help_text="Not claimed before this time.")
    started_at = models.DateTimeField(
        null=True, blank=True, help_text="When the current or last attempt started."
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    attempts = models.PositiveIntegerField(default=0, help_text="Attempts started and counted.")
    claims = models.PositiveIntegerField(
        default=0,
        db_default=0,
        help_text=(
            "Times claimed. Each claim's writes are fenced on it, so a stale worker's write is "
            "dropped."
        ),
    )
    max_attempts = models.PositiveIntegerField(default=3)
    retry_abandoned = models.BooleanField(
        default=True,
        help_text="Whether a task whose worker died is retried (while attempts remain).",
    )
    abandoned = models.BooleanField(
        default=False, help_text="An attempt ended with its worker's death."
    )
    claimed_by = models.ForeignKey(
        "WorkerProcess",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    worker = models.CharField(
        max_length=255, blank=True, db_default="", help_text="The worker of the last attempt."
    )
    cancel_requested = models.BooleanField(default=False, help_text="Asked to stop while running.")

    concurrency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 - NULL: no limit
    concurrency_limit = models.PositiveSmallIntegerField(null=True, blank=True)
    concurrency_duration = models.FloatField(
        null=True, blank=True, help_text="Seconds a slot is held at most."
    )

    return_value = models.JSONField(null=True, blank=True)
    errors = models.JSONField(
        default=list, blank=True, help_text="One entry per failed or abandoned attempt."
    )

    class Meta:
        indexes = [
            # The claim: ready tasks of one queue, in claim order.
            models.Index(
                "queue_name",
                models.F("priority").desc(),
                "run_at",
                "id",
                name="taskqueue_claim_by_queue",
                condition=Q(status=Status.READY),
            ),
            # The claim for `*` and prefix selectors: all ready tasks, in claim order.
            models.Index(
                models.F("priority").desc(),
                "run_at",
                "id",
                name="taskqueue_claim_any_queue",
                condition=Q(status=Status.READY),
            ),
            models.Index(
                "claimed_by", name="taskqueue_running", condition=Q(status=Status.RUNNING)
            ),
            # Slots in use and blocked tasks, per concurrency key.
            models.Index(
                fields=["concurrency_key", "status"],
                name="taskqueue_concurrency",
                condition=Q(concurrency_key__isnull=False, status__in=UNFINISHED),
            ),
            # Pruning and the admin's counts of finished tasks. Partial, so the planner can never
            # mistake it for a way to find ready tasks (it did, on stale statistics).
            models.Index(
                fields=["status", "finished_at"],
                name="taskqueue_finished",
                condition=Q(status__in=FINISHED),
            ),
        ]
        constraints = [
            # Enforced by the database, so two processes racing cannot both enqueue the key.
            models.UniqueConstraint(
                "queue_name",
                "dupe_key",
                name="taskqueue_unique_unfinished_dupe_key",
                condition=Q(status__in=UNFINISHED, dupe_key__isnull=False),
            ),
        ]
        permissions = [("retry_task", "Can retry and cancel tasks")]

    def __str__(self) -> str:
        return f"{self.task_path} #{self.pk}"

    @property
    def error_history(self) -> list[dict[str, Any]]:
        """The errors, one entry per failed attempt, whatever the stored column holds: a row edited
        by hand into something else reads as one `taskqueue.CorruptRow` entry keeping its text."""
        if not self.errors:
            return []
        return error_entries(self.errors)[0]

    @property
    def last_error(self) -> dict[str, Any] | None:
        history = self.error_history
        return history[-1] if history else None


class WorkerProcess(models.Model):
    """A running worker process. Liveness is one heartbeat per process, not one write per task."""

    name = models.CharField(max_length=200)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    threads = models.PositiveSmallIntegerField(default=1)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    # The operating system's start time of `pid` (clock ticks since boot): a pid reused by another
    # process after this one died does not pass for it.
    pid_started = models.BigIntegerField(null=True, blank=True)
    threads_alive = models.PositiveSmallIntegerField(
        default=0, help_text="Worker threads alive at the last heartbeat."
    )
    scheduler_alive = models.BooleanField(
        null=True, blank=True, help_text="Empty: this process runs no scheduler."
    )

    class Meta:
        verbose_name = "worker process"
        verbose_name_plural = "worker processes"

    def __str__(self) -> str:
        return f"{self.name} ({self.hostname}:{self.pid})"


class PausedQueue(models.Model):
    """A queue whose tasks wait: workers claim nothing from it until it is resumed."""

    name = models.CharField(max_length=100, unique=True)
    paused_at = models.DateTimeField()

    class Meta:
        verbose_name = "paused queue"

    def __str__(self) -> str:
        return self.name


class RecurringTask(models.Model):
    """A task enqueued on a cron schedule, from settings (static) or created at run time
    (dynamic)."""

    key = models.CharField(max_length=100, unique=True)
    task_path = models.CharField(
        max_length=255, help_text="Queue class, django.tasks task or @shared_task."
    )
    schedule = models.CharField(max_length=100, help_text="Cron: 5 fields, or 6 with seconds last.")
    timezone = models.CharField(max_length=64, default="UTC")
    args = models.JSONField(
        default=list, blank=True, help_text="Positional arguments (a queue class gets the first)."
    )
    kwargs = models.JSONField(default=dict, blank=True)
    queue_name = models.CharField(
        max_length=100, blank=True, default="", help_text="Empty: the task's own."
    )
    priority = models.SmallIntegerField(null=True, blank=True, help_text="Empty: the task's own.")
    description = models.TextField(blank=True, default="")
    enabled = models.BooleanField(default=True)
    static = models.BooleanField(
        default=False, help_text="Defined in settings (changes there win)."
    )
    created_at = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True, blank=True, help_text="The last tick enqueued.")
    last_error = models.TextField(
        blank=True, default="", help_text="Why the last tick could not be enqueued."
    )
    last_error_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.key


class RecurringRun(models.Model):
    """One tick of a recurring task. Unique per tick: however many schedulers run, one enqueues
    it."""

    recurring = models.ForeignKey(RecurringTask, on_delete=models.CASCADE, related_name="runs")
    scheduled_at = models.DateTimeField()
    task_id = models.BigIntegerField(help_text="The task this tick enqueued.")

    class Meta:
        constraints = [
            models.UniqueConstraint("recurring", "scheduled_at", name="taskqueue_one_run_per_tick"),
        ]

    def __str__(self) -> str:
        return f"{self.recurring_id} at {self.scheduled_at.isoformat()}"


class ConcurrencyKey(models.Model):
    """A lock row per concurrency key: admitting and promoting tasks of a key take turns on it."""

    key = models.CharField(max_length=255, unique=True)

    def __str__(self) -> str:
        return self.key
