"""Gunicorn as configured by gunicorn.conf.py: slow clients cannot stop the site, and the scheme
headers are trusted only when TRUST_X_FORWARDED_PROTO says a proxy sets them."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import urlsplit

import pytest

from tests.conftest import PROJECT, manage

pytestmark = pytest.mark.slow


def get(
    base_url: str, path: str, headers: dict[str, str] | None = None, timeout: float = 10
) -> http.client.HTTPResponse:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    connection.request("GET", path, headers={"Host": "127.0.0.1"} | (headers or {}))
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


@contextmanager
def half_sent_requests(base_url: str, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that each send the start of a request and then nothing (slowloris)."""
    parts = urlsplit(base_url)
    with ExitStack() as stack:
        sockets = []
        for _ in range(count):
            client = stack.enter_context(
                socket.create_connection((parts.hostname, parts.port), timeout=5)
            )
            client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sockets.append(client)
        yield sockets


def test_half_sent_requests_do_not_stop_the_site(gunicorn) -> None:
    base_url = gunicorn(WEB_CONCURRENCY="1")
    with half_sent_requests(base_url, 4):
        time.sleep(1.0)  # the slow requests have been taken by the worker
        started = time.monotonic()
        for _ in range(3):
            assert get(base_url, "/healthz", timeout=10).status == 200
        assert time.monotonic() - started < 5, (
            "the site answered while slow clients held connections"
        )


def test_the_scheme_header_is_ignored_unless_a_proxy_is_trusted(production_env, gunicorn) -> None:
    assert (
        manage("collectstatic", "--noinput", env=production_env).returncode == 0
    )  # the pages link them
    spoofed = {"X-Forwarded-Proto": "https"}
    untrusted = gunicorn(SECURE_SSL_REDIRECT="true")
    response = get(untrusted, "/", spoofed)
    assert response.status == 301 and response.getheader("Location", "").startswith("https://"), (
        "a request over plain HTTP is redirected, whatever header the client sends"
    )
    trusted = gunicorn(SECURE_SSL_REDIRECT="true", TRUST_X_FORWARDED_PROTO="true")
    assert get(trusted, "/", spoofed).status == 200, (
        "behind a trusted proxy the header tells the scheme"
    )


def test_gunicorn_listens_on_loopback_unless_host_is_set() -> None:
    from config.env import Environment

    namespace: dict[str, object] = {"__file__": "gunicorn.conf.py"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ENV_FILE", "")
        patch.delenv("HOST", raising=False)
        patch.delenv("PORT", raising=False)
        source = (PROJECT / "gunicorn.conf.py").read_text()
        exec(compile(source, "gunicorn.conf.py", "exec"), namespace)
    assert namespace["bind"] == "127.0.0.1:8000" and namespace["worker_class"] == "gthread"
    assert isinstance(namespace["env"], Environment)
