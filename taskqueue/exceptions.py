"""Every error of the task queue, under one base, TaskQueueError."""

from django.tasks.exceptions import TaskResultDoesNotExist


class TaskQueueError(Exception):
    """Base class of the task queue's own errors."""


class DupeKeyExc(TaskQueueError):
    """An unfinished task of this queue already has the dupe key. (Named as in django-task-queue,
    whose queue-class API this app keeps.)"""


class DeserializationExc(TaskQueueError):
    """A task's stored arguments could not be decoded. (Named as in django-task-queue.)"""


class SerializationError(TaskQueueError, TypeError):
    """An argument cannot be stored: it does not round-trip through JSON (nothing was enqueued)."""


class Stopped(TaskQueueError):
    """Raised by a task that stops early because `stop_requested()` said so, from any front door.

    If the task was cancelled (revoked), it ends cancelled; if its worker is shutting down, it goes
    back to the queue without using up an attempt, and runs again from the start. Raised without a
    stop request, it is an error like any other.
    """


class UnknownTaskKind(TaskQueueError):
    """A task row of a kind no front door registered (its front door's module is not imported)."""


class TimeLimitExceeded(TaskQueueError, TimeoutError):
    """Raised in a task that ran past its soft time limit (`timeout`, `soft_time_limit`, or
    TASKQUEUE["DEFAULT_TIMEOUT"]); the task then fails or is retried by its rules. A task still
    running TIMEOUT_GRACE later has its worker process ended, and the attempt is recorded with this
    error too."""


class UndeclaredTask(TaskQueueError, LookupError):
    """A task path that no front door declared (see `taskqueue.engine.registry`): it is not imported
    and does not run; a task row naming it fails, and a recurring task naming it is refused."""


class UndeclaredTaskResult(UndeclaredTask, TaskResultDoesNotExist):
    """`get_result()` of a row whose task path no front door declared: to code written for
    django.tasks, a result that does not exist (it could never be a complete TaskResult), to this
    app an UndeclaredTask."""


class TaskModuleError(TaskQueueError, ImportError):
    """A task module (an installed app's `tasks`, or one of TASKQUEUE["TASK_MODULES"]) failed to
    import: a worker does not start without its tasks."""


class TaskFailed(TaskQueueError):
    """Raised by the Celery-style `AsyncResult.get()` for a task that failed: carries its exception
    class, message and traceback."""

    def __init__(self, exc_class: str, message: str, traceback: str) -> None:
        super().__init__(f"{exc_class}: {message}")
        self.exc_class, self.message, self.traceback = exc_class, message, traceback


class TaskNoLongerWaiting(TaskQueueError):
    """A worker claimed the task (or it finished) since its change form was read: saving would undo
    that."""

    def __init__(self, task_id: int) -> None:
        super().__init__(
            f"Task {task_id} was not saved: a worker claimed it or it finished after this form "
            "was loaded, and saving would have undone that. This is its state now; edit it again "
            "if it is still waiting."
        )
