"""Start-up checks of the site's own settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from apps.core.ratelimit import parse_rate

SCOPES = ("signup", "contact", "login", "password_reset")


@register()
def check_rate_limits(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Every form's rate is there and readable, reported all at once."""
    limits = getattr(settings, "RATE_LIMITS", None)
    if not isinstance(limits, dict):
        return [
            Error(
                "RATE_LIMITS must be a dict of form name to rate, such as {'signup': '5/h'}.",
                id="core.E001",
            )
        ]
    errors = [
        Error(f"RATE_LIMITS has no rate for {scope!r}.", id="core.E002")
        for scope in SCOPES
        if scope not in limits
    ]
    for scope, rate in limits.items():
        try:
            parse_rate(str(rate))
        except ValueError as error:
            errors.append(Error(f"RATE_LIMITS[{scope!r}]: {error}", id="core.E003"))
    return errors
