from django.apps import AppConfig


class EmailsConfig(AppConfig):
    """Demo: sign-up and contact forms whose emails are sent by the worker, not the web request."""

    name = "apps.emails"
    label = "emails"
    verbose_name = "Emails demo"
