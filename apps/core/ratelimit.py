"""A small rate limit for the site's forms: at most N posts per period per client (and per account
name where the form has one), counted in Django's cache.

The forms that send mail or try passwords (sign-up, contact, password reset, log in) are what an
attacker scripts: without a limit, one visitor can mail any address over and over or guess passwords
at the speed of the site. A post over the limit is answered 429 with a Retry-After header; pages
(GET) are never limited.

Counts live in the default cache. The local-memory cache (the default) counts per process, so with
several web processes the limit is that many times looser: set CACHE_URL to a shared cache (a
database table, `dbcache://site_cache` after `manage.py createcachetable`, or Redis) in production.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

View = Callable[..., HttpResponse]


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind the trusted proxy (TRUST_X_FORWARDED_PROTO) the
    address that proxy appended to X-Forwarded-For, the one entry a client cannot forge."""
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.rsplit(",", 1)[-1].strip()
    return str(request.META.get("REMOTE_ADDR", ""))


def rate_limited(scope: str, field: str | None = None) -> Callable[[View], View]:
    """Limit posts to the view by `settings.RATE_LIMITS[scope]` ("5/h", "10/m", "30/s"), per client
    address, and per value of the posted `field` too (such as the username a login tries)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "POST":
                count, period = parse_rate(settings.RATE_LIMITS[scope])
                keys = [f"address:{client_address(request)}"]
                if field and request.POST.get(field):
                    keys.append(f"{field}:{request.POST[field].strip().lower()[:150]}")
                window = int(time.time() // period)
                if any(_hit(f"ratelimit:{scope}:{key}:{window}", period) > count for key in keys):
                    retry_after = period - int(time.time() % period)
                    response = TemplateResponse(
                        request, "core/rate_limited.html", {"retry_after": retry_after}, status=429
                    )
                    response["Retry-After"] = str(retry_after)
                    return response
            return view(request, *args, **kwargs)

        return limited

    return decorate


PERIODS = {"s": 1, "m": 60, "h": 3600}


def parse_rate(rate: str) -> tuple[int, int]:
    """ "5/h" as (5, 3600). Raises ValueError for anything else (checked at start-up, see
    apps.core.checks)."""
    count, _, unit = rate.partition("/")
    if not count.isdigit() or int(count) < 1 or unit not in PERIODS:
        raise ValueError(
            f"{rate!r} is not a rate: write it as N/s, N/m or N/h with N of 1 or more."
        )
    return int(count), PERIODS[unit]


def _hit(key: str, period: int) -> int:
    """Count one post in this window. `add` then `incr`, so two processes never both start at 1."""
    cache.add(key, 0, timeout=period + 1)
    try:
        return cache.incr(key)
    except ValueError:  # expired between the two calls: this post opens the window
        cache.add(key, 1, timeout=period + 1)
        return 1
