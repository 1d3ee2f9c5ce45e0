"""Pages of the reports demo: request a report, follow its build live, cancel it, download its
files.

Every view works on the signed-in user's own reports: anybody else's is a 404, as if it did not
exist. Media files are not public; the files of a report are served here, to its owner only.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.db import transaction
from django.db.models import QuerySet
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import redirect
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import cache_control, never_cache
from django.views.generic import CreateView, DetailView, ListView
from django.views.generic.detail import BaseDetailView, SingleObjectMixin

from apps.reports.forms import ReportForm
from apps.reports.models import Report
from apps.reports.tasks import cancel_report, request_build

# The chart is served from this site: it may draw, never run a script or load anything.
CHART_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


class OwnReportsMixin(LoginRequiredMixin):
    """The signed-in user's reports, and only theirs."""

    model = Report

    def get_queryset(self) -> QuerySet[Report]:
        return Report.objects.filter(owner=self.request.user)


class LiveReportMixin(OwnReportsMixin, SingleObjectMixin):
    """One of the user's reports."""


class ReportListView(OwnReportsMixin, ListView):
    paginate_by = 20

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(form=ReportForm(), **kwargs)


class ReportCreateView(OwnReportsMixin, CreateView):
    """Save the report and enqueue its build once that is committed; on errors, the form page shows
    them."""

    form_class = ReportForm

    def get_form_kwargs(self) -> dict[str, Any]:
        return super().get_form_kwargs() | {"instance": Report(owner=self.request.user)}

    def form_valid(self, form: ReportForm) -> HttpResponse:
        with transaction.atomic():
            response = super().form_valid(form)
            request_build(self.object)
        messages.success(
            self.request, f"Report requested: “{self.object}” is being built in the background."
        )
        return response


class ReportDetailView(LiveReportMixin, DetailView):
    pass


@method_decorator(never_cache, name="dispatch")
class ReportStatusView(LiveReportMixin, BaseDetailView):
    """Where the report page's script polls the build from."""

    raise_exception = True  # a script is answered 403, not redirected to the login page

    def render_to_response(self, context: dict[str, Any]) -> JsonResponse:
        report: Report = self.object
        return JsonResponse(
            {
                "status": report.status,
                "label": report.status_label,
                "progress": report.progress,
                "finished": not report.is_active,
                "cancellable": report.is_cancellable,
            }
        )


class ReportCancelView(OwnReportsMixin, SingleObjectMixin, View):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseRedirect:
        report = self.get_object()
        if not cancel_report(report):
            messages.error(
                request,
                f"This report has already finished ({report.get_status_display().lower()}).",
            )
        elif report.status == Report.Status.CANCELLED:
            messages.success(request, "Report cancelled.")
        else:
            messages.info(request, "Cancelling: the build stops after its current step.")
        return redirect(report)


@method_decorator(cache_control(private=True, no_store=True), name="dispatch")
class ReportFileView(OwnReportsMixin, SingleObjectMixin, View):
    """One file of a finished report: as a download, or shown in the page (the chart).

    A user's own data: no shared cache (a proxy, a CDN) may keep it, nor the browser's disk."""

    http_method_names = ["get", "head"]
    field_name = "csv_file"
    as_attachment = True

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> FileResponse:
        report = self.get_object()
        file = getattr(report, self.field_name)
        if report.status != Report.Status.SUCCEEDED or not file:
            raise Http404("This report has no such file.")
        extension = file.name.rpartition(".")[2]
        try:
            content = file.open("rb")
        except FileNotFoundError:
            raise Http404("This report's file is gone.") from None
        response = FileResponse(
            content, as_attachment=self.as_attachment, filename=report.download_name(extension)
        )
        if not self.as_attachment:
            response["Content-Security-Policy"] = CHART_POLICY
        return response
