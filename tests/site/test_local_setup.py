"""What `make run` does before serving: write a local .env, create and print the admin login."""

from __future__ import annotations

import os

import environ
import pytest
from honcho.environ import parse

from scripts import write_env
from tests.conftest import manage


def test_local_env_turns_debug_on_with_fresh_secrets() -> None:
    example = (write_env.PROJECT / ".env.example").read_text()
    first, second = write_env.local_env(example), write_env.local_env(example)
    values = dict(
        line.split("=", 1) for line in first.splitlines() if line and not line.startswith("#")
    )
    assert values["DEBUG"] == "true"
    assert len(values["SECRET_KEY"]) >= 50 and values["SECRET_KEY"] != "change-me"
    assert values["DJANGO_SUPERUSER_PASSWORD"] != "change-me"
    assert first != second, "every .env gets its own secrets"


def test_honcho_and_the_site_read_the_same_values_from_the_env_file(tmp_path, monkeypatch) -> None:
    """`make run` starts honcho, which reads .env itself, and the site reads it again with
    django-environ: a value either of them reads differently (spaces, "#") would reach the processes
    mangled."""
    written = write_env.local_env((write_env.PROJECT / ".env.example").read_text())
    by_honcho = dict(parse(written))
    env_file = tmp_path / ".env"
    env_file.write_text(written)
    for name in by_honcho:
        monkeypatch.delenv(name, raising=False)
    environ.Env.read_env(str(env_file))
    by_the_site = {name: os.environ[name] for name in by_honcho}
    assert by_honcho == by_the_site
    assert by_honcho["DEFAULT_FROM_EMAIL"] == "Task queue template <noreply@localhost>"


def test_existing_env_file_is_kept(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env.example").write_text("SECRET_KEY=change-me\n")
    (tmp_path / ".env").write_text("SECRET_KEY=mine\n")
    monkeypatch.setattr(write_env, "PROJECT", tmp_path)
    assert write_env.main() == 0
    assert (tmp_path / ".env").read_text() == "SECRET_KEY=mine\n"


@pytest.mark.slow
def test_ensure_local_admin_creates_the_login_once_and_prints_it(production_env) -> None:
    env = production_env | {
        "DJANGO_SUPERUSER_USERNAME": "admin",
        "DJANGO_SUPERUSER_PASSWORD": "s3cret-Pw!",
    }
    assert manage("migrate", "-v0", env=env).returncode == 0
    first = manage("ensure_local_admin", env=env)
    assert first.returncode == 0, first.stderr
    assert "(created)" in first.stdout and "user admin  password s3cret-Pw!" in first.stdout
    again = manage("ensure_local_admin", env=env)
    assert "(exists)" in again.stdout
    check = manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; print(User.objects.get().is_superuser)",
        env=env,
    )
    assert check.stdout.strip().splitlines()[-1] == "True"
