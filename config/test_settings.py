"""Settings for the test suite: the real settings, with a test environment and a few speed-ups.

The environment is fixed before the real settings are read, so a developer's `.env` never leaks
into a test run. DATABASE_URL is left alone: `make test` sets it for the PostgreSQL pass.
"""

import os
import tempfile

os.environ["ENV_FILE"] = ""
os.environ.setdefault(
    "SECRET_KEY", "test-only-secret-key-that-is-long-enough-to-look-random-1234567890"
)
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("EMAIL_URL", "locmem://")

from config.settings import *  # noqa: F403
from config.settings import DATABASES, STORAGES, TASKQUEUE

# The test suite's own queue classes and tasks (the site's are found in each app's tasks.py).
TEST_TASK_MODULES = [
    f"tests.taskqueue.{module}"
    for module in (
        "sample_queues",
        "sample_tasks",
        "sample_celery",
        "sample_guarantees",
        "sample_limits",
        "sample_signals",
        "sample_timeouts",
        "test_liveness_faults",
    )
]
TASKQUEUE["TASK_MODULES"] = [*TASKQUEUE["TASK_MODULES"], *TEST_TASK_MODULES]

# A file, not SQLite's in-memory default, so worker processes started by tests share the database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"taskqueue-test-{os.getpid()}.sqlite3")
    }

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Templates render without a collectstatic manifest; the whitenoise tests use the real storage.
WHITENOISE_USE_FINDERS = WHITENOISE_AUTOREFRESH = True
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# The site's own tests run Celery-style tasks inline, raising their exceptions, as Celery users
# expect. (tests/taskqueue/ turns this off: those tests are about the queue itself.)
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
