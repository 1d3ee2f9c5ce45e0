from django.core.checks import Error, register

from taskqueue.conf import load_settings


@register()
def check_settings(app_configs, **kwargs) -> list[Error]:
    """Bad TASKQUEUE values stop `manage.py` commands with a clear error, not a worker crash later."""
    try:
        load_settings()
    except (TypeError, ValueError) as error:
        return [Error(str(error), hint="See the TASKQUEUE settings in the README.", id="taskqueue.E001")]
    return []
