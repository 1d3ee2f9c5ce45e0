from django.apps import AppConfig


class ReportsConfig(AppConfig):
    """Demo: reports built in the background, with live progress, cancellation and a download."""

    name = "apps.reports"
    label = "reports"
    verbose_name = "Reports demo"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from apps.reports.models import Report
        from apps.reports.signals import delete_report_files, finish_ended_build
        from taskqueue.signals import task_ended

        post_delete.connect(
            delete_report_files, sender=Report, dispatch_uid="reports.delete_report_files"
        )
        task_ended.connect(finish_ended_build, dispatch_uid="reports.finish_ended_build")
