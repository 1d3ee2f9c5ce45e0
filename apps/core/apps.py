from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The site's own pages: the home page and the health check."""

    name = "apps.core"
    label = "core"
    verbose_name = "Site"

    def ready(self) -> None:
        from apps.core import checks  # noqa: F401 - registers the checks
