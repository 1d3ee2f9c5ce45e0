"""The taskqueue folder can be copied into another project: it imports nothing from this site."""

from __future__ import annotations

import ast
from pathlib import Path

SITE_PACKAGES = ("config", "apps")
TASKQUEUE = Path(__file__).resolve().parent.parent / "taskqueue"


def imported_modules(source: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_taskqueue_imports_nothing_from_the_site() -> None:
    offenders = {
        f"{path.relative_to(TASKQUEUE.parent)}: {module}"
        for path in TASKQUEUE.rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] in SITE_PACKAGES
    }
    assert not offenders, f"taskqueue must stand alone, but imports {sorted(offenders)}"


def test_the_check_sees_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nfrom config.settings import DEBUG\nfrom . import sibling\n")
    assert imported_modules(probe) == {"os", "config.settings"}


def test_suite_runs_on_the_database_it_was_given(django_db_blocker) -> None:
    """`make test` runs twice; this fails if the PostgreSQL pass silently fell back to SQLite."""
    import os

    from django.db import connection

    expected = (
        "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    )
    assert connection.vendor == expected
