"""Read the site's settings from the environment, strictly.

django-environ does the URL parsing; this module adds what a deployable template needs on top:
every value is validated, and a bad one stops start-up with an ImproperlyConfigured error that
names the variable, the value and what was expected, instead of being silently read as a default.
"""

from __future__ import annotations

import builtins
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Milliseconds a SQLite connection waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 20_000

# Per scheme: the mail backend, and which MAILERS OPTIONS it accepts (Django rejects unknown ones).
MAIL_BACKENDS: dict[str, tuple[str, frozenset[str]]] = {
    "console": ("django.core.mail.backends.console.EmailBackend", frozenset()),
    "locmem": ("django.core.mail.backends.locmem.EmailBackend", frozenset()),
    "dummy": ("django.core.mail.backends.dummy.EmailBackend", frozenset()),
    "file": ("django.core.mail.backends.filebased.EmailBackend", frozenset({"file_path"})),
    "smtp": (
        "django.core.mail.backends.smtp.EmailBackend",
        frozenset({"host", "port", "username", "password", "use_tls", "use_ssl", "timeout"}),
    ),
}
SMTP_TIMEOUT_SECONDS = 30
SMTP_SCHEMES = {
    "smtp": {},
    "smtp+tls": {"use_tls": True},
    "smtps": {"use_tls": True},
    "smtp+ssl": {"use_ssl": True},
}


def site_environment(base_dir: Path) -> Environment:
    """The site's environment: the process's variables, then `ENV_FILE` (default `<project>/.env`)
    for what they leave unset. ENV_FILE="" reads no file at all (the test suite uses that to ignore
    a developer's .env). The settings and gunicorn.conf.py both read it, so both see the same
    values."""
    env_file = os.environ.get("ENV_FILE", str(base_dir / ".env"))
    return Environment(Path(env_file) if env_file else None)


class Environment:
    """Typed, validated access to environment variables (and a `.env` file, if given)."""

    def __init__(self, env_file: Path | None = None) -> None:
        self._env = environ.Env()
        if env_file is not None and env_file.is_file():
            # Values already in the process environment win over the file.
            environ.Env.read_env(env_file, overwrite=False)

    def raw(self, name: str, default: str | None = None) -> str:
        """The value as a string; an empty value counts as unset."""
        value = self._env.str(name, default=None) or default
        if value is None:
            raise ImproperlyConfigured(f"Set the {name} environment variable (see .env.example).")
        return value

    def bool(self, name: str, default: bool) -> bool:
        value = self._env.str(name, default=None)
        if value is None:
            return default
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a boolean: use one of true/false, yes/no, on/off, 1/0."
        )

    def int(self, name: str, default: int, minimum: int = 0) -> int:
        value = self._env.str(name, default=None)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name}={value!r} is not a whole number.") from None
        if number < minimum:
            raise ImproperlyConfigured(f"{name}={value!r} must be at least {minimum}.")
        return number

    def seconds(self, name: str, default: float) -> float:
        """A positive number of seconds, such as 2 or 0.5."""
        value = self._env.str(name, default=None)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name}={value!r} is not a number of seconds.") from None
        if not number > 0 or number == float("inf"):
            raise ImproperlyConfigured(f"{name}={value!r} must be a positive number of seconds.")
        return number

    def list(self, name: str, default: list[str]) -> list[str]:
        value = self._env.str(name, default=None)
        if value is None:
            return default
        return [item.strip() for item in value.split(",") if item.strip()]

    def log_level(self, name: str, default: str) -> str:
        value = self.raw(name, default).strip().upper()
        if value not in LOG_LEVELS:
            raise ImproperlyConfigured(
                f"{name}={value!r} is not a log level: use one of {', '.join(LOG_LEVELS)}."
            )
        return value

    def origins(self, name: str, default: builtins.list[str]) -> builtins.list[str]:
        origins = self.list(name, default)
        for origin in origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ImproperlyConfigured(
                    f"{name} entry {origin!r} is not an origin: write it with its scheme, e.g. https://example.com."
                )
        return origins

    def database(self, name: str, default: str) -> dict[str, Any]:
        url = self.raw(name, default)
        try:
            config = environ.Env.db_url_config(url)
        except (ImproperlyConfigured, ValueError, KeyError) as error:
            reason = masked(str(error), url)
            raise ImproperlyConfigured(
                f"{name} is not a usable database URL ({reason}): {masked(url)!r}"
            ) from None
        engine = config.get("ENGINE", "")
        if engine == "django.db.backends.sqlite3":
            return sqlite_database(config)
        if engine == "django.db.backends.postgresql":
            return postgresql_database(config)
        raise ImproperlyConfigured(
            f"{name} must be a sqlite:// or postgres:// URL, got {urlsplit(url).scheme!r}."
        )

    def cache(self, name: str, default: str) -> dict[str, Any]:
        url = self.raw(name, default)
        try:
            return environ.Env.cache_url_config(url)
        except (ImproperlyConfigured, ValueError, KeyError) as error:
            raise ImproperlyConfigured(
                f"{name} is not a usable cache URL ({masked(str(error), url)})."
            ) from None

    def mailers(self, name: str, default: str) -> dict[str, dict[str, Any]]:
        return {"default": mailer_config(name, self.raw(name, default))}


# The password of a URL: between "scheme://user:" and the last "@" of its authority.
_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][\w+.-]*://[^:@/?#]*:)(?P<password>[^/?#]*)@")


def masked(text: str, url: str | None = None) -> str:
    """`text` with the password of `url` (by default `text` is the URL) replaced by ***, so that no
    start-up error prints a credential into logs, terminals or a supervisor's mail."""
    match = _PASSWORD.match(url if url is not None else text)
    if match is None or not match["password"]:
        return text
    password = match["password"]
    secrets = {password, unquote(password)}
    if url is None:
        text = match["head"] + "***@" + text[match.end() :]
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def sqlite_database(config: dict[str, Any]) -> dict[str, Any]:
    """SQLite tuned for one web process and several worker processes sharing the file."""
    if not config.get("NAME"):
        raise ImproperlyConfigured(
            "A SQLite DATABASE_URL needs a file path, e.g. sqlite:///db.sqlite3."
        )
    config["OPTIONS"] = {
        # WAL lets readers proceed while one process writes; NORMAL sync is safe under WAL.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        # Take the write lock when a transaction starts, so two writers queue up on the busy
        # timeout instead of one failing at once when it tries to upgrade a read lock.
        "transaction_mode": "IMMEDIATE",
        "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
        **config.get("OPTIONS", {}),
    }
    return config


def postgresql_database(config: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL with persistent connections that are health-checked before reuse."""
    config.setdefault("CONN_MAX_AGE", 60)
    config["CONN_HEALTH_CHECKS"] = True
    return config


def mailer_config(name: str, url: str) -> dict[str, Any]:
    """Map an EMAIL_URL onto one entry of Django 6.1's MAILERS setting."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in SMTP_SCHEMES:
        backend, allowed = MAIL_BACKENDS["smtp"]
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"{name} has a bad port: {masked(url)!r}") from None
        if not parts.hostname:
            raise ImproperlyConfigured(
                f"{name} needs a host, e.g. smtp://user:password@mail.example.com:587."
            )
        options: dict[str, Any] = {
            "host": parts.hostname,
            "port": port or 25,
            **SMTP_SCHEMES[scheme],
        }
        parsed = environ.Env.email_url_config(url)
        if parsed.get("EMAIL_HOST_USER"):
            options["username"] = parsed["EMAIL_HOST_USER"]
        if parsed.get("EMAIL_HOST_PASSWORD"):
            options["password"] = parsed["EMAIL_HOST_PASSWORD"]
        options |= {key.lower(): value for key, value in parsed.get("OPTIONS", {}).items()}
        # A hung mail server must not hold a worker thread forever; ?timeout=N in the URL overrides
        # this.
        options.setdefault("timeout", SMTP_TIMEOUT_SECONDS)
    elif scheme == "file":
        backend, allowed = MAIL_BACKENDS["file"]
        options = {"file_path": parts.path}
    elif scheme in ("console", "locmem", "dummy"):
        backend, allowed = MAIL_BACKENDS[scheme]
        options = {}
    else:
        known = ", ".join([*SMTP_SCHEMES, "file", "console", "locmem", "dummy"])
        raise ImproperlyConfigured(
            f"{name} scheme {scheme!r} is not supported: use one of {known}."
        )
    unknown = set(options) - allowed
    if unknown:
        raise ImproperlyConfigured(
            f"{name} has options {sorted(unknown)} that {backend} does not accept."
        )
    return {"BACKEND": backend, "OPTIONS": options}
