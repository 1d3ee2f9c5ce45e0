"""A report a user asked for, and where its background build stands.

The row is what the user's pages read; the task queue's own row (`task_id`) is what operators read.
Every change of status is a conditional UPDATE ("from these statuses to that one"), so the web
process and the worker never overwrite each other's news: a report cancelled by its owner is not
marked running by a worker that starts it a moment later, and a finished report stays finished.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.dates import MONTHS

from apps.reports.data import FIRST_YEAR, LAST_YEAR


def report_file_path(report: Report, filename: str) -> str:
    """Files of one report share a folder: reports/<owner id>/<report id>/."""
    return f"reports/{report.owner_id}/{report.pk}/{filename}"


class Report(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reports"
    )
    year = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(FIRST_YEAR), MaxValueValidator(LAST_YEAR)]
    )
    months = models.PositiveSmallIntegerField(
        default=12,
        validators=[MinValueValidator(1), MaxValueValidator(12)],
        help_text="January through this month.",
    )
    status = models.CharField(max_length=10, choices=Status, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done, 0 to 100.")
    cancel_requested = models.BooleanField(
        default=False, help_text="The owner asked to stop the build."
    )
    task_id = models.CharField(
        max_length=64, blank=True, help_text="The id of the build's task in the queue."
    )
    csv_file = models.FileField("CSV file", upload_to=report_file_path, blank=True)
    chart = models.FileField(upload_to=report_file_path, blank=True)
    error = models.TextField(blank=True, help_text="What the owner is told when the build fails.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="reports_owner_newest_first")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="reports_progress_at_most_100"
            ),
        ]

    def __str__(self) -> str:
        period = MONTHS[1] if self.months == 1 else f"{MONTHS[1]} to {MONTHS[self.months]}"
        return f"Sales {self.year}, {period}"

    def get_absolute_url(self) -> str:
        return reverse("reports:detail", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def is_cancellable(self) -> bool:
        return self.is_active and not self.cancel_requested

    @property
    def status_label(self) -> str:
        """The status as the owner reads it, "Cancelling…" included (a request, not a status)."""
        return (
            "Cancelling…" if self.is_active and self.cancel_requested else self.get_status_display()
        )

    def download_name(self, extension: str) -> str:
        return f"sales-{self.year}-{self.months:02d}m.{extension}"

    # Changes of state: each is one UPDATE, applied only where its condition still holds.

    def _move(self, condition: models.Q, **changes: Any) -> bool:
        moved = Report.objects.filter(condition, pk=self.pk).update(**changes)
        if moved:
            for name, value in changes.items():
                setattr(self, name, value)
        return bool(moved)

    def start(self) -> bool:
        """Queued (or running, when a crashed attempt is retried) to running; False if it must not
        run."""
        return self._move(
            models.Q(status__in=self.ACTIVE, cancel_requested=False),
            status=self.Status.RUNNING,
            progress=0,
            started_at=timezone.now(),
        )

    def requeue(self) -> bool:
        """Back to queued, for another attempt (its worker stopped before it was done)."""
        return self._move(
            models.Q(status=self.Status.RUNNING),
            status=self.Status.QUEUED,
            progress=0,
            started_at=None,
        )

    def finish(self, status: Status, error: str = "") -> bool:
        changes: dict[str, Any] = {"status": status, "error": error, "finished_at": timezone.now()}
        if status == self.Status.SUCCEEDED:
            changes["progress"] = 100
        return self._move(models.Q(status__in=self.ACTIVE), **changes)

    def request_cancel(self) -> bool:
        return self._move(models.Q(status__in=self.ACTIVE), cancel_requested=True)

    def set_progress(self, percent: int) -> bool:
        return self._move(models.Q(status=self.Status.RUNNING), progress=percent)

    def save_file(self, field_name: str, name: str, content: bytes) -> None:
        getattr(self, field_name).save(name, ContentFile(content), save=False)
        self.save(update_fields=[field_name])

    def delete_files(self) -> None:
        """Remove whatever the build saved so far (a partial report is worse than none)."""
        fields = [name for name in ("csv_file", "chart") if getattr(self, name)]
        for name in fields:
            getattr(self, name).delete(save=False)
        if fields:
            self.save(update_fields=fields)
