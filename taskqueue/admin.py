"""The operator's view of the queue: tasks grouped by state with counts, failures readable, retry at
hand."""

from __future__ import annotations

import json
from datetime import timedelta
from functools import cached_property
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from taskqueue import dashboard, recurring
from taskqueue.control import QueueInfo
from taskqueue.dashboard import error_line, state_filters
from taskqueue.engine import databases, operations
from taskqueue.exceptions import TaskNoLongerWaiting, TaskQueueError, TimeLimitExceeded
from taskqueue.models import PausedQueue, RecurringTask, Status, Task, WorkerProcess

# The query parameter a waiting task's change form posts back: the task's claim count when the form
# was read.
CLAIMS_SEEN = "_claims"


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        groups = state_filters(timezone.now())
        tasks = model_admin.get_queryset(request)
        return [
            (key, f"{label} ({tasks.filter(condition).count()})")
            for key, (label, condition) in groups.items()
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task]:
        groups, value = state_filters(timezone.now()), self.value()
        if value is not None and value in groups:
            return queryset.filter(groups[value][1])
        return queryset


class AgeFilter(admin.SimpleListFilter):
    title = "enqueued"
    parameter_name = "age"
    AGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("1h", "Last hour"),
            ("24h", "Last 24 hours"),
            ("7d", "Last 7 days"),
            ("older", "Older than 7 days"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task]:
        value = self.value()
        if value is not None and value in self.AGES:
            return queryset.filter(enqueued_at__gte=timezone.now() - self.AGES[value])
        if value == "older":
            return queryset.filter(enqueued_at__lt=timezone.now() - self.AGES["7d"])
        return queryset


class EstimatedCountPaginator(Paginator):
    """An unfiltered list uses the planner's row estimate where the database keeps one (PostgreSQL):
    no full-table COUNT(*)."""

    @cached_property
    def count(self) -> int:
        queryset: QuerySet[Task] = self.object_list  # type: ignore[assignment]  # the admin pages querysets
        if not queryset.query.where:
            connection = connections[queryset.db]
            estimate = databases.for_connection(connection).estimated_rows(
                connection, Task._meta.db_table
            )
            if estimate is not None and estimate > 10_000:
                return estimate
        return super().count


# The query-string parameters a field's list filter uses (Django's field filters: exact values,
# empty or not, date ranges, related ids).
FIELD_FILTER_SUFFIXES = ("", "__exact", "__isnull", "__gte", "__lt", "__id__exact")


def attempt_ending(entry: dict[str, Any]) -> str:
    """How a failed attempt ended, when it was not by its own error: its worker died, or it timed
    out."""
    if entry.get("abandoned"):
        return " (worker died)"
    if entry.get("exc_class") == TIMED_OUT:
        return " (timed out)"
    return ""


TIMED_OUT = f"{TimeLimitExceeded.__module__}.{TimeLimitExceeded.__qualname__}"


class FilterLookupsOnly(admin.ModelAdmin):
    """A changelist filters only by what its list filters offer.

    Django's default accepts any lookup on any local field from the query string, so
    `?payload__contains=...` probes the stored arguments (and is an error on SQLite). Anything else
    is refused as a bad request."""

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        allowed = set()
        for item in self.get_list_filter(request):
            if isinstance(item, type) and issubclass(item, admin.SimpleListFilter):
                allowed.add(str(item.parameter_name))
            elif isinstance(item, str):
                allowed.update(item + suffix for suffix in FIELD_FILTER_SUFFIXES)
            elif isinstance(item, tuple | list) and isinstance(item[0], str):
                allowed.update(item[0] + suffix for suffix in FIELD_FILTER_SUFFIXES)
        return lookup in allowed and super().lookup_allowed(lookup, value, request)


@admin.register(Task)
class TaskAdmin(FilterLookupsOnly):
    list_display = (
        "id",
        "task_path",
        "queue_name",
        "state",
        "priority",
        "attempts",
        "run_at",
        "last_error_line",
    )
    list_display_links = ("id", "task_path")
    list_filter = (StateFilter, "queue_name", AgeFilter)
    search_fields = ("=id", "note", "task_path", "errors")
    search_help_text = "Search by id, note, task path, or error text and traceback."
    ordering = ("-id",)
    list_per_page = 50
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    actions = ("retry_tasks", "cancel_tasks", "delete_selected")
    editable_when_waiting = ("priority", "run_at", "note")
    dashboard_refresh_seconds = 5
    waiting = (Status.READY, Status.BLOCKED)
    fieldsets = (
        (None, {"fields": ("task_path", "queue_name", "state", "note", "priority", "run_at")}),
        ("Arguments", {"fields": ("arguments",)}),
        (
            "Attempts",
            {
                "fields": (
                    "attempts",
                    "max_attempts",
                    "retry_abandoned",
                    "enqueued_at",
                    "started_at",
                    "finished_at",
                    "claimed_by",
                    "dupe_key",
                )
            },
        ),
        ("Errors", {"fields": ("error_history",)}),
        ("Result", {"fields": ("result",)}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Task | None = None) -> tuple[str, ...]:
        computed = ("state", "arguments", "error_history", "result")
        stored = tuple(field.name for field in Task._meta.fields if field.name != "id")
        if obj is not None and obj.status in self.waiting:
            stored = tuple(name for name in stored if name not in self.editable_when_waiting)
        return computed + stored

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tasks are enqueued by code, not typed in

    def has_change_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        """Only waiting tasks can be edited; the others are shown read-only (with their retry
        button)."""
        if obj is not None and obj.status not in self.waiting:
            return False
        return super().has_change_permission(request, obj)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("taskqueue.retry_task")

    @admin.display(description="state")
    def state(self, task: Task) -> str:
        if task.status == Status.READY and task.run_at > timezone.now():
            label = "scheduled"
        else:
            label = task.get_status_display().lower()
        if task.abandoned and task.status != Status.SUCCEEDED:
            label += " (abandoned)"
        return format_html(
            '<span class="taskqueue-state taskqueue-{}">{}</span>', task.status, label
        )

    @admin.display(description="last error")
    def last_error_line(self, task: Task) -> str:
        return error_line(task)

    @admin.display(description="arguments")
    def arguments(self, task: Task) -> str:
        return format_html(
            '<pre class="taskqueue-json">{}</pre>', json.dumps(task.payload, indent=2)
        )

    @admin.display(description="result")
    def result(self, task: Task) -> str:
        if task.status != Status.SUCCEEDED:
            return "-"
        return format_html(
            '<pre class="taskqueue-json">{}</pre>', json.dumps(task.return_value, indent=2)
        )

    @admin.display(description="errors, one per failed attempt")
    def error_history(self, task: Task) -> str:
        if not task.errors:
            return "None"
        return format_html_join(
            "",
            '<section class="taskqueue-error"><h4>Attempt {} at {} on worker {}{}</h4>'
            "<p><strong>{}</strong>: {}</p><pre>{}</pre></section>",
            (
                (
                    e.get("attempt"),
                    e.get("at"),
                    e.get("worker"),
                    attempt_ending(e),
                    e.get("exc_class"),
                    e.get("message"),
                    e.get("traceback") or "(no traceback)",
                )
                for e in reversed(task.error_history)
            ),
        )

    @admin.action(description="Retry selected tasks now", permissions=["retry"])
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._report_retry(request, operations.retry(queryset.values_list("pk", flat=True)))

    @admin.action(
        description="Cancel selected tasks (running ones are asked to stop)", permissions=["retry"]
    )
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        result = operations.cancel(queryset.values_list("pk", flat=True))
        self._report(
            request, result, "cancelled or asked to stop", "already finished, so not cancelled"
        )

    def _report(
        self, request: HttpRequest, result: operations.Result, done: str, refused: str
    ) -> None:
        if result.done:
            self.message_user(request, f"{result.done} task(s) {done}.", messages.SUCCESS)
        if result.refused:
            self.message_user(request, f"{result.refused} task(s) {refused}.", messages.WARNING)

    def _report_retry(self, request: HttpRequest, result: operations.Result) -> None:
        """Tasks refused because their dupe key is in use are counted apart: the operator can act on
        them (by finishing or cancelling the task that holds the key)."""
        in_use = sum(reason == operations.DUPE_KEY_IN_USE for reason in result.refusals.values())
        others = operations.Result(done=result.done, refused=result.refused - in_use)
        self._report(request, others, "retried", "still running or waiting, so not retried")
        if in_use:
            self.message_user(
                request,
                f"{in_use} task(s) not retried because their dupe key is in use by an unfinished "
                "task of the same queue.",
                messages.WARNING,
            )

    def get_urls(self) -> list[URLPattern]:
        retry_view = self.admin_site.admin_view(require_POST(self.retry_view))
        dashboard_view = self.admin_site.admin_view(self.dashboard_view)
        return [
            path("dashboard/", dashboard_view, name="taskqueue_dashboard"),
            path("<int:task_id>/retry/", retry_view, name="taskqueue_task_retry"),
            *super().get_urls(),
        ]

    def retry_view(self, request: HttpRequest, task_id: int) -> HttpResponseRedirect:
        """The "Retry now" button of a task's page, and the dashboard's "Retry" buttons (which come
        back to it)."""
        if not self.has_retry_permission(request):
            raise PermissionDenied
        task = get_object_or_404(Task, pk=task_id)
        self._report_retry(request, operations.retry([task.pk]))
        if request.POST.get("return_to") == "dashboard":
            return HttpResponseRedirect(reverse("admin:taskqueue_dashboard"))
        return HttpResponseRedirect(reverse("admin:taskqueue_task_change", args=[task.pk]))

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        """The queue dashboard; `?fragment=1` renders only the part its script swaps in every few
        seconds."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            "dashboard": dashboard.snapshot(timezone.now()),
            "can_retry": self.has_retry_permission(request),
            "refresh_seconds": self.dashboard_refresh_seconds,
        }
        if request.GET.get("fragment"):
            return TemplateResponse(request, "admin/taskqueue/dashboard_body.html", context)
        context |= {
            **self.admin_site.each_context(request),
            "title": "Queue dashboard",
            "opts": self.opts,
        }
        return TemplateResponse(request, "admin/taskqueue/dashboard.html", context)

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ):
        task = kwargs.get("obj")
        context["can_retry"] = bool(
            task and task.status in operations.RETRYABLE and self.has_retry_permission(request)
        )
        if task is not None and task.status in self.waiting:
            # The form posts back the claim count it was read at (a form re-shown with errors keeps
            # the first).
            query = request.GET.copy()
            if request.method != "POST" or CLAIMS_SEEN not in query:
                query[CLAIMS_SEEN] = str(task.claims)
            kwargs["form_url"] = f"?{query.urlencode()}"
        return super().render_change_form(request, context, *args, **kwargs)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ):
        """A waiting task's edits are saved only if no worker claimed it since the form was read
        (see save_model); if one did, the operator is told so, and nothing changes."""
        try:
            if request.method == "POST" and self.has_change_permission(request):
                self._check_still_waiting(request, object_id)
            return super().change_view(request, object_id, form_url, extra_context)
        except TaskNoLongerWaiting as refusal:
            self.message_user(request, str(refusal), messages.ERROR)
            query = request.GET.copy()
            query.pop(CLAIMS_SEEN, None)  # the next form is read afresh
            return HttpResponseRedirect(
                f"{request.path}?{query.urlencode()}" if query else request.path
            )

    def _check_still_waiting(self, request: HttpRequest, object_id: str) -> None:
        """Before the form is handled: a task claimed or finished meanwhile is refused with a
        message (a finished one would otherwise be a bare "403 Forbidden", as it is no longer
        editable)."""
        task = self.get_object(request, unquote(object_id))
        seen = claims_seen(request)
        if task is not None and (
            task.status not in self.waiting or seen not in (None, task.claims)
        ):
            raise TaskNoLongerWaiting(task.pk)

    def save_model(self, request: HttpRequest, obj: Task, form: Any, change: bool) -> None:
        """Save only the fields the form edited, with an UPDATE that applies only while the task
        still waits as it did when the form was read (same status group, same claim count): a save
        never reverts a worker's claim or outcome, which would run the task again."""
        edited = {name: getattr(obj, name) for name in form.changed_data}
        if not edited:
            return
        seen = claims_seen(request)
        still_waiting = Task.objects.filter(
            pk=obj.pk, status__in=self.waiting, claims=obj.claims if seen is None else seen
        )
        if not still_waiting.update(**edited):
            raise TaskNoLongerWaiting(obj.pk)


def claims_seen(request: HttpRequest) -> int | None:
    """The claim count a change form was read at (None from a form that did not post it back)."""
    try:
        return int(request.GET[CLAIMS_SEEN])
    except (KeyError, ValueError):
        return None


@admin.register(WorkerProcess)
class WorkerProcessAdmin(FilterLookupsOnly):
    list_display = (
        "name",
        "hostname",
        "pid",
        "queue_list",
        "threads",
        "started_at",
        "heartbeat_at",
        "heartbeat_age",
    )
    readonly_fields = ("name", "hostname", "pid", "queues", "threads", "started_at", "heartbeat_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WorkerProcess | None = None) -> bool:
        return False

    @admin.display(description="queues")
    def queue_list(self, process: WorkerProcess) -> str:
        return ", ".join(process.queues)

    @admin.display(description="last heartbeat")
    def heartbeat_age(self, process: WorkerProcess) -> str:
        return f"{(timezone.now() - process.heartbeat_at).total_seconds():.0f} s ago"


@admin.register(PausedQueue)
class PausedQueueAdmin(FilterLookupsOnly):
    """Adding a queue here pauses it (its tasks wait); deleting the entry resumes it."""

    list_display = ("name", "paused_at", "waiting", "latency")
    fields = ("name",)

    def save_model(self, request: HttpRequest, obj: PausedQueue, form: Any, change: bool) -> None:
        obj.paused_at = obj.paused_at or timezone.now()
        super().save_model(request, obj, form, change)

    @admin.display(description="waiting tasks")
    def waiting(self, paused: PausedQueue) -> int:
        return QueueInfo(paused.name).size

    @admin.display(description="oldest due task waiting")
    def latency(self, paused: PausedQueue) -> str:
        return f"{QueueInfo(paused.name).latency.total_seconds():.0f} s"


@admin.register(RecurringTask)
class RecurringTaskAdmin(FilterLookupsOnly):
    list_display = (
        "key",
        "task_path",
        "schedule",
        "timezone",
        "enabled",
        "next_run",
        "last_run_at",
        "error",
        "static",
    )
    list_filter = ("enabled", "static")
    search_fields = ("key", "task_path", "description")
    actions = ("enable", "disable", "run_now")
    readonly_fields = (
        "static",
        "created_at",
        "last_run_at",
        "next_run",
        "last_error",
        "last_error_at",
    )

    def get_readonly_fields(
        self, request: HttpRequest, obj: RecurringTask | None = None
    ) -> tuple[str, ...]:
        if obj is not None and obj.static:
            # Settings define it: change it there. Only switching it on and off is done here.
            return (
                *tuple(
                    f.name for f in RecurringTask._meta.fields if f.name not in ("id", "enabled")
                ),
                "next_run",
            )
        return self.readonly_fields

    def get_form(
        self,
        request: HttpRequest,
        obj: RecurringTask | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        """The form refuses a schedule that could never run (bad cron, a date such as 31 February, a
        task that cannot be imported), so the operator reads why on the form instead of saving a
        failing row."""
        form = super().get_form(request, obj, change, **kwargs)

        class RecurringTaskForm(form):  # type: ignore[valid-type,misc]  # the admin's form class, made at runtime
            def clean(self) -> dict[str, Any]:
                cleaned = super().clean()
                if self.instance.static or self.errors:
                    # the settings were checked when synced; or the fields are wrong already
                    return cleaned
                values = {
                    name: cleaned.get(name, getattr(self.instance, name))
                    for name in recurring.FIELDS
                }
                try:
                    recurring.validate(values)
                except TaskQueueError as error:
                    self.add_error(None, str(error))
                return cleaned

        return RecurringTaskForm

    def save_model(self, request: HttpRequest, obj: RecurringTask, form: Any, change: bool) -> None:
        obj.created_at = obj.created_at or timezone.now()
        super().save_model(request, obj, form, change)

    @admin.display(description="next run")
    def next_run(self, task: RecurringTask) -> str:
        if not task.enabled:
            return "disabled"
        try:
            return (
                recurring.Schedule.parse(task.schedule, task.timezone)
                .next_tick(timezone.now())
                .isoformat()
            )
        except TaskQueueError as error:
            return str(error)

    @admin.display(description="last error")
    def error(self, task: RecurringTask) -> str:
        """The first line of the error of the last tick that failed, cleared by the next one
        enqueued."""
        return task.last_error.partition("\n")[0][:200]

    @admin.action(description="Enable selected recurring tasks", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[RecurringTask]) -> None:
        self.message_user(request, f"{queryset.update(enabled=True)} enabled.", messages.SUCCESS)

    @admin.action(description="Disable selected recurring tasks", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[RecurringTask]) -> None:
        self.message_user(request, f"{queryset.update(enabled=False)} disabled.", messages.SUCCESS)

    @admin.action(description="Run selected recurring tasks now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[RecurringTask]) -> None:
        """Each selected task alone: one whose task cannot be enqueued is reported, the others
        run."""
        ids = []
        for task in queryset:
            try:
                ids.append(recurring.run_now(task))
            except Exception as error:
                self.message_user(
                    request,
                    f"Not enqueued: {task.key} ({recurring.describe(error)})",
                    messages.ERROR,
                )
        if ids:
            self.message_user(
                request, f"Enqueued task(s) {', '.join(map(str, ids))}.", messages.SUCCESS
            )
