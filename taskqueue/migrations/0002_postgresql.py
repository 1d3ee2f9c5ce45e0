"""PostgreSQL only: wake-ups on commit, and a queue table vacuumed and analyzed sooner.

A statement-level trigger notifies the `taskqueue` channel when a statement makes a task ready to run
(run_at compared with the clock, not the transaction's start, and a second of tolerance for application
hosts whose clocks run a little ahead). Bulk inserts send one notification; claims and completions,
which make nothing ready, send none. Other databases rely on polling.

A queue table churns all day; with the default thresholds (20% of the table changed) statistics go
stale and dead index entries pile up between autovacuum runs, slowing every claim: 1% keeps both fresh.
"""

from django.db import migrations

from taskqueue.engine.databases.postgresql import run_on_postgresql

CREATE = """
CREATE FUNCTION taskqueue_notify_ready() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed WHERE status = 'ready' AND run_at <= clock_timestamp() + interval '1 second')
    THEN
        PERFORM pg_notify('taskqueue', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER taskqueue_notify_insert AFTER INSERT ON taskqueue_task
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION taskqueue_notify_ready();
CREATE TRIGGER taskqueue_notify_update AFTER UPDATE ON taskqueue_task
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION taskqueue_notify_ready();
ALTER TABLE taskqueue_task SET (
    autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01, autovacuum_analyze_threshold = 1000
);
"""

DROP = """
ALTER TABLE taskqueue_task RESET (
    autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
    autovacuum_analyze_scale_factor, autovacuum_analyze_threshold
);
DROP TRIGGER IF EXISTS taskqueue_notify_update ON taskqueue_task;
DROP TRIGGER IF EXISTS taskqueue_notify_insert ON taskqueue_task;
DROP FUNCTION IF EXISTS taskqueue_notify_ready();
"""


class Migration(migrations.Migration):
    dependencies = [("taskqueue", "0001_initial")]

    operations = [migrations.RunPython(run_on_postgresql(CREATE), run_on_postgresql(DROP))]
