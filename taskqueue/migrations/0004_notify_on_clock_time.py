"""PostgreSQL only: compare run_at with the clock, not with the transaction's start.

`now()` is when the transaction began: tasks stamped later in the same transaction (a bulk enqueue,
or any enqueue inside `atomic()`) looked scheduled and woke nobody. A second of tolerance covers
application hosts whose clocks run slightly ahead of the database's.
"""

from django.db import migrations

from taskqueue.engine.schema import run_on_postgresql

FUNCTION = """
CREATE OR REPLACE FUNCTION taskqueue_notify_ready() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed WHERE status = 'ready' AND run_at <= {bound}) THEN
        PERFORM pg_notify('taskqueue', '');
    END IF;
    RETURN NULL;
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [("taskqueue", "0003_finished_index_partial")]

    operations = [
        migrations.RunPython(
            run_on_postgresql(FUNCTION.format(bound="clock_timestamp() + interval '1 second'")),
            run_on_postgresql(FUNCTION.format(bound="now()")),
        )
    ]
