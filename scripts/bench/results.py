"""The figures collected, per database, step and run, and the problems reported with them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from scripts.bench.table import Row


@dataclass
class Results:
    # (database, step) -> run -> result
    figures: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, database: str, step: str, run: str, result: dict[str, Any]) -> None:
        where = f"{database} {step} ({run})"
        self.problems.extend(f"{where}: {problem}" for problem in result.pop("problems", []))
        if "error" in result:
            self.problems.append(f"{where}: ERROR {result['error']}")
        else:
            self.figures.setdefault((database, step), {})[run] = result

    def values(self, database: str, row: Row) -> list[float]:
        """The row's figure of each run, in run order (only runs where every figure it needs
        exists)."""
        runs = self.figures.get((database, row.key), {})
        if row.relative_to is None:
            return [result[row.field] for result in runs.values() if row.field in result]
        bases = self.figures.get((database, row.relative_to), {})
        return [
            result[row.field] / bases[run][row.field]
            for run, result in runs.items()
            if row.field in result and bases.get(run, {}).get(row.field)
        ]

    def median(self, database: str, row: Row) -> float | None:
        values = self.values(database, row)
        return statistics.median(values) if values else None
