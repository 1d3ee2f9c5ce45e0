from django.apps import AppConfig


class ReportsConfig(AppConfig):
    """Demo: reports built in the background, with live progress, cancellation and a download."""

    name = "apps.reports"
    label = "reports"
    verbose_name = "Reports demo"
