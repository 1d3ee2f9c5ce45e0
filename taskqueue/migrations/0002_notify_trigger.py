"""PostgreSQL only: notify the `taskqueue` channel when a statement makes a task ready to run now.

Statement-level, with a transition table, so a bulk insert sends one notification and claims and
completions (which make nothing ready) send none. Other databases rely on polling.
"""

from django.db import migrations

from taskqueue.engine.schema import run_on_postgresql

CREATE = """
CREATE FUNCTION taskqueue_notify_ready() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed WHERE status = 'ready' AND run_at <= now()) THEN
        PERFORM pg_notify('taskqueue', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER taskqueue_notify_insert AFTER INSERT ON taskqueue_task
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION taskqueue_notify_ready();
CREATE TRIGGER taskqueue_notify_update AFTER UPDATE ON taskqueue_task
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION taskqueue_notify_ready();
"""

DROP = """
DROP TRIGGER IF EXISTS taskqueue_notify_update ON taskqueue_task;
DROP TRIGGER IF EXISTS taskqueue_notify_insert ON taskqueue_task;
DROP FUNCTION IF EXISTS taskqueue_notify_ready();
"""


class Migration(migrations.Migration):
    dependencies = [("taskqueue", "0001_initial")]

    operations = [migrations.RunPython(run_on_postgresql(CREATE), run_on_postgresql(DROP))]
