"""The site is ready for production: `check --deploy` is clean, static files are served by
whitenoise."""

from __future__ import annotations

import gzip
import re
import urllib.request

import pytest

from tests.conftest import manage

pytestmark = pytest.mark.slow


def test_check_deploy_reports_nothing_with_production_values(production_env) -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_gunicorn_serves_hashed_compressed_static_files(production_env, gunicorn) -> None:
    collected = manage("collectstatic", "--noinput", env=production_env)
    assert collected.returncode == 0, collected.stderr
    # As in production: behind a proxy that terminates TLS and says so.
    base_url = gunicorn(TRUST_X_FORWARDED_PROTO="true")
    behind_proxy = {"X-Forwarded-Proto": "https"}

    home_request = urllib.request.Request(base_url + "/", headers=behind_proxy)
    home = urllib.request.urlopen(home_request, timeout=5).read().decode()
    stylesheet = re.search(r'href="(/static/css/site\.[0-9a-f]{12}\.css)"', home)
    assert stylesheet, "the home page links the hashed stylesheet"

    request = urllib.request.Request(
        base_url + stylesheet.group(1), headers={"Accept-Encoding": "gzip"} | behind_proxy
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Encoding"] == "gzip"
        assert "immutable" in response.headers["Cache-Control"]
        assert b".container" in gzip.decompress(response.read())
