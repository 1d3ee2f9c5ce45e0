"""Settings of the reference site, read from the environment (twelve-factor style).

Every value comes from an environment variable or the local `.env` file (see `.env.example`);
the defaults are the safe production ones, so a forgotten variable never opens a hole.
"""

import os
from pathlib import Path

from django.utils.csp import CSP

from config.env import site_environment

BASE_DIR = Path(__file__).resolve().parent.parent
env = site_environment(BASE_DIR)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.raw("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.origins("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "taskqueue",
    "apps.core",
    "apps.emails",
    "apps.reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]

# SQLite by default: WAL mode and a busy timeout, so web and worker processes share the file.
DATABASES = {
    "default": env.database("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The task queue's tables stay on "default" unless QUEUE_DATABASE_URL gives them a database of their
# own.
DATABASE_ROUTERS = ["taskqueue.routers.TaskQueueRouter"]
# The engine's timings (see docs/settings.md); what is not set here keeps the engine's default.
TASKQUEUE: dict = {
    name: env.seconds(f"TASKQUEUE_{name}", default)
    for name, default in (
        ("HEARTBEAT_INTERVAL", 2.0),
        ("WORKER_DEAD_AFTER", 120.0),
        ("SHUTDOWN_TIMEOUT", 25.0),
        ("TIMEOUT_GRACE", 10.0),
    )
}
if os.environ.get(
    "TASKQUEUE_DEFAULT_TIMEOUT"
):  # seconds; unset: no limit for tasks that declare none
    TASKQUEUE["DEFAULT_TIMEOUT"] = env.seconds("TASKQUEUE_DEFAULT_TIMEOUT", 0)
# Modules that declare tasks besides each installed app's tasks.py, comma-separated: only declared
# tasks run (see docs/security.md).
TASKQUEUE["TASK_MODULES"] = env.list("TASKQUEUE_TASK_MODULES", default=[])
if os.environ.get("QUEUE_DATABASE_URL"):
    DATABASES["queue"] = env.database("QUEUE_DATABASE_URL", default="")
    TASKQUEUE["DATABASE"] = "queue"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.raw("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# Static files: hashed, compressed and served by whitenoise, from gunicorn as from runserver.
STATIC_URL = "static/"
STATIC_ROOT = Path(env.raw("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
LOGIN_REDIRECT_URL = "core:home"
LOGOUT_REDIRECT_URL = "core:home"

MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.raw("MEDIA_ROOT", str(BASE_DIR / "media")))
# In development whitenoise serves straight from the source folders, picking up edits.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Background tasks: Django's tasks framework on the taskqueue app's database backend.
TASKS = {
    "default": {
        "BACKEND": "taskqueue.backend.DatabaseBackend",
        "QUEUES": [],  # any queue name; list names here to have typos refused at enqueue
        "OPTIONS": {},  # TASKQUEUE settings for this backend (see docs/settings.md)
    }
}

# Reports demo: milliseconds each build step is slowed down by, so a person sees the progress bar
# move.
REPORTS_STEP_DELAY_MS = env.int("REPORTS_STEP_DELAY_MS", default=300)

# Mail: EMAIL_URL (console://, smtp://user:pass@host:587, smtp+tls://…, file:///path) becomes
# Django 6.1's MAILERS setting; the EMAIL_BACKEND/EMAIL_* settings are deprecated.
MAILERS = env.mailers("EMAIL_URL", default="console://")
DEFAULT_FROM_EMAIL = env.raw("DEFAULT_FROM_EMAIL", "Task queue template <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Where contact-form messages go, and the address emails link back to.
CONTACT_EMAIL = env.raw("CONTACT_EMAIL", "team@localhost")
SITE_URL = env.raw("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

# HTTPS hardening, on unless DEBUG. Behind a proxy that terminates TLS, set
# TRUST_X_FORWARDED_PROTO=true so Django sees the original scheme.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Content-Security-Policy on every page (the site's and the admin's): scripts and styles from this
# site, or inline with the request's nonce ({% csp_nonce_attr %}); nothing may frame the pages. A
# view may send its own policy (the report chart does).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# Posts per client address (and per account name where the form has one) before the form answers
# 429; apps/core/ratelimit.py. Counted in the default cache: CACHE_URL should name a shared one in
# production.
RATE_LIMITS = {"signup": "10/h", "contact": "10/h", "login": "20/h", "password_reset": "10/h"}
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# Logs go to stdout, one line per record, for honcho, supervisord and container runtimes.
LOG_LEVEL = env.log_level("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "line",
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["stdout"], "level": LOG_LEVEL, "propagate": False},
    },
}
