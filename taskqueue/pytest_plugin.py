"""The task queue's pytest fixture: `pytest_plugins = ["taskqueue.pytest_plugin"]` in a conftest, or
`pytest -p taskqueue.pytest_plugin`. Needs pytest-django (the fixture uses its `db`).

    def test_sign_up_sends_the_welcome_email(client, task_queue):
        client.post("/signup/", {...})
        task_queue.assert_enqueued(WelcomeEmailQueue)
        assert [run.state for run in task_queue.run_pending()] == ["succeeded"]

Nothing of Django is imported until a test uses the fixture, so the plugin loads before Django is
set up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from taskqueue.testing import TaskQueueFixture


@pytest.fixture
def task_queue(db: None) -> TaskQueueFixture:
    """taskqueue.testing's helpers: run_pending, enqueued, assert_enqueued, assert_not_enqueued."""
    from taskqueue.testing import TaskQueueFixture

    return TaskQueueFixture()
