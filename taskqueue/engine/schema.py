"""Schema steps only PostgreSQL takes, for the migrations (other databases have no equivalent)."""

from collections.abc import Callable
from typing import Any


def run_on_postgresql(sql: str) -> Callable[[Any, Any], None]:
    def operation(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return operation
