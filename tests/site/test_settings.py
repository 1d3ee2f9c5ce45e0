"""The settings read the environment strictly: good values parse, bad ones stop start-up clearly."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import SQLITE_BUSY_TIMEOUT_MS, Environment, mailer_config
from tests.conftest import manage


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch):
    def make(**values: str) -> Environment:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        return Environment()

    return make


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("On", True), ("1", True), ("no", False), ("0", False)]
)
def test_bool_accepts_the_usual_words(environment, value: str, expected: bool) -> None:
    assert environment(FLAG=value).bool("FLAG", default=not expected) is expected


def test_bool_rejects_anything_else_naming_the_variable(environment) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"DEBUG='maybe' is not a boolean"):
        environment(DEBUG="maybe").bool("DEBUG", default=False)


def test_missing_required_value_says_which_variable(
    environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ImproperlyConfigured, match="Set the SECRET_KEY environment variable"):
        environment().raw("SECRET_KEY")


def test_list_splits_on_commas_and_trims(environment) -> None:
    assert environment(HOSTS=" a.com, b.com ,,").list("HOSTS", default=[]) == ["a.com", "b.com"]


def test_origins_need_a_scheme(environment) -> None:
    assert environment(ORIGINS="https://a.com").origins("ORIGINS", default=[]) == ["https://a.com"]
    with pytest.raises(ImproperlyConfigured, match="write it with its scheme"):
        environment(ORIGINS="a.com").origins("ORIGINS", default=[])


def test_int_rejects_words_and_negatives(environment) -> None:
    assert environment(N="42").int("N", default=0) == 42
    with pytest.raises(ImproperlyConfigured, match="is not a whole number"):
        environment(N="forty").int("N", default=0)
    with pytest.raises(ImproperlyConfigured, match="must be at least 0"):
        environment(N="-1").int("N", default=0)


def test_log_level_is_checked(environment) -> None:
    assert environment(LOG_LEVEL="debug").log_level("LOG_LEVEL", default="INFO") == "DEBUG"
    with pytest.raises(ImproperlyConfigured, match="is not a log level"):
        environment(LOG_LEVEL="LOUD").log_level("LOG_LEVEL", default="INFO")


def test_sqlite_url_gets_wal_immediate_transactions_and_busy_timeout(environment, tmp_path) -> None:
    config = environment(DATABASE_URL=f"sqlite:///{tmp_path}/x.sqlite3").database(
        "DATABASE_URL", default=""
    )
    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == f"{tmp_path}/x.sqlite3"
    assert "journal_mode=WAL" in config["OPTIONS"]["init_command"]
    assert config["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert config["OPTIONS"]["timeout"] == SQLITE_BUSY_TIMEOUT_MS / 1000


def test_postgres_url_parses_with_health_checked_connections(environment) -> None:
    config = environment(DATABASE_URL="postgres://u:p%40ss@db.example.com:5433/app").database(
        "DATABASE_URL", default=""
    )
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["USER"], config["PASSWORD"], config["HOST"], config["PORT"], config["NAME"]) == (
        "u",
        "p@ss",
        "db.example.com",
        5433,
        "app",
    )
    assert config["CONN_HEALTH_CHECKS"] is True


@pytest.mark.filterwarnings("ignore:Engine not recognized")
@pytest.mark.parametrize("url", ["mysql://u@h/db", "redis://localhost:6379/0", "nonsense"])
def test_unsupported_database_urls_are_refused(environment, url: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        environment(DATABASE_URL=url).database("DATABASE_URL", default="")


def test_email_url_smtp_maps_onto_mailers(environment) -> None:
    mailers = environment(EMAIL_URL="smtp+tls://me%40x.com:secret@mail.example.com:587").mailers(
        "EMAIL_URL", default=""
    )
    assert mailers == {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": "mail.example.com",
                "port": 587,
                "use_tls": True,
                "username": "me@x.com",
                "password": "secret",
                "timeout": 30,
            },
        }
    }


def test_email_url_console_and_ssl(environment) -> None:
    assert (
        environment(EMAIL_URL="console://")
        .mailers("EMAIL_URL", default="")["default"]["BACKEND"]
        .endswith("console.EmailBackend")
    )
    ssl = environment(EMAIL_URL="smtp+ssl://mail.example.com:465").mailers("EMAIL_URL", default="")[
        "default"
    ]
    assert ssl["OPTIONS"] == {
        "host": "mail.example.com",
        "port": 465,
        "use_ssl": True,
        "timeout": 30,
    }


def test_smtp_gets_a_timeout_so_a_hung_server_cannot_hold_a_worker_and_the_url_can_change_it(
    environment,
) -> None:
    hurried = environment(EMAIL_URL="smtp://mail.example.com:25?timeout=5").mailers(
        "EMAIL_URL", default=""
    )
    assert hurried["default"]["OPTIONS"]["timeout"] == 5


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("carrier-pigeon://coop", "is not supported"),
        ("smtp://", "needs a host"),
        ("smtp://h:99999", "bad port"),
    ],
)
def test_bad_email_urls_are_refused(environment, url: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        environment(EMAIL_URL=url).mailers("EMAIL_URL", default="")


def test_smtp_mailer_built_by_django_from_email_url(settings) -> None:
    """The MAILERS entry is one Django 6.1 accepts: it builds a backend with those options."""
    from django.core.mail import mailers

    settings.MAILERS = {"default": mailer_config("EMAIL_URL", "smtp://u:pw@127.0.0.1:2525")}
    backend = mailers.default
    assert (backend.host, backend.port, backend.username, backend.password) == (
        "127.0.0.1",
        2525,
        "u",
        "pw",
    )


@pytest.mark.slow
def test_site_refuses_to_start_on_a_bad_value(production_env) -> None:
    result = manage("check", env=production_env | {"DEBUG": "perhaps"})
    assert result.returncode != 0
    assert "DEBUG='perhaps' is not a boolean" in result.stderr


@pytest.mark.slow
def test_site_refuses_to_start_without_a_secret_key(production_env) -> None:
    env = {key: value for key, value in production_env.items() if key != "SECRET_KEY"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "Set the SECRET_KEY environment variable" in result.stderr


@pytest.mark.slow
def test_debug_is_off_unless_turned_on(production_env) -> None:
    env = {key: value for key, value in production_env.items() if key != "DEBUG"}
    result = manage(
        "shell", "-c", "from django.conf import settings; print(settings.DEBUG)", env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.slow
def test_env_file_is_read_but_the_environment_wins(production_env, tmp_path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LOG_LEVEL=WARNING\nTIME_ZONE=Europe/Riga\n")
    env = production_env | {"ENV_FILE": str(env_file), "TIME_ZONE": "Asia/Tokyo"}
    code = "from django.conf import settings; print(settings.LOG_LEVEL, settings.TIME_ZONE)"
    result = manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "WARNING Asia/Tokyo"


def test_empty_value_counts_as_unset(environment) -> None:
    assert (
        environment(DATABASE_URL="").raw("DATABASE_URL", "sqlite:///fallback.sqlite3")
        == "sqlite:///fallback.sqlite3"
    )


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("DATABASE_URL", "postgres://app:s3cr%40t-pw@db.example.com:notaport/app"),
        ("DATABASE_URL", "mysql-ish://app:s3cr%40t-pw@db.example.com/app"),
        ("QUEUE_DATABASE_URL", "postgres://app:s3cr%40t-pw@db.example.com:99999999/queue"),
        ("EMAIL_URL", "smtp://mailer:s3cr%40t-pw@mail.example.com:notaport"),
    ],
)
def test_a_bad_url_stops_start_up_without_printing_its_password(variable: str, url: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "SECRET_KEY": "x", "ENV_FILE": "", variable: url}
    result = manage("check", env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and variable in output
    assert "s3cr" not in output and "t-pw" not in output, output[-2000:]
