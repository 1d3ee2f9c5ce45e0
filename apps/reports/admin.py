"""Reports in the admin: what operators need to help a user, read-only (users request reports,
workers build them)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from apps.reports.models import Report


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ["__str__", "owner", "status", "progress", "created_at", "finished_at"]
    list_filter = ["status", "year"]
    list_select_related = ["owner"]
    search_fields = ["owner__username", "owner__email", "task_id"]
    date_hierarchy = "created_at"
    fields = [
        "owner",
        "year",
        "months",
        "status",
        "progress",
        "cancel_requested",
        "queue_task",
        "error",
        "csv_file",
        "chart",
        "created_at",
        "started_at",
        "finished_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Report | None = None) -> bool:
        return False

    @admin.display(description="Task in the queue")
    def queue_task(self, report: Report) -> str:
        """A link to the build's task, where its exception and traceback are, if it failed."""
        if not report.task_id:
            return "-"
        try:
            url = reverse("admin:taskqueue_task_change", args=[report.task_id])
        except NoReverseMatch:
            return report.task_id
        return format_html('<a href="{}">Task {}</a>', url, report.task_id)
