"""What the runtime shows a person on a terminal: one live row per dataset."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dqmon.results import CheckResult, Status

if TYPE_CHECKING:
    from rich.table import Table


@dataclass
class DatasetStatus:
    up: bool = False
    batches: int = 0
    rows_seen: int = 0
    last_batch: datetime | None = None
    results: dict[str, CheckResult] = field(default_factory=dict)
    # when each not-ok check started failing, and when the source went down (for the health API)
    failing_since: dict[str, datetime] = field(default_factory=dict)
    down_since: datetime | None = None
    has_source: bool = False


class StatusBoard:
    """Latest state per dataset; thread-safe; rendered as a rich table by the live display."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, DatasetStatus] = {}
        self.alerts_firing = 0
        self.notifications = 0

    def declare(self, name: str) -> None:
        with self._lock:
            self._rows.setdefault(name, DatasetStatus())

    def retain(self, names: set[str]) -> None:
        """Forget datasets a reload removed (their last results must not keep the health failing)."""
        with self._lock:
            for name in [n for n in self._rows if n not in names]:
                del self._rows[name]

    def batch(self, name: str, rows_seen: int, at: datetime) -> None:
        with self._lock:
            row = self._rows.setdefault(name, DatasetStatus())
            row.batches += 1
            row.rows_seen += rows_seen
            row.last_batch = at

    def results(self, name: str, results: Sequence[CheckResult]) -> None:
        with self._lock:
            row = self._rows.setdefault(name, DatasetStatus())
            for result in results:
                row.results[result.check] = result
                if result.status == Status.OK:
                    row.failing_since.pop(result.check, None)
                else:
                    row.failing_since.setdefault(result.check, result.evaluated_at)

    def source_up(self, name: str, up: bool) -> None:
        with self._lock:
            row = self._rows.setdefault(name, DatasetStatus())
            row.up, row.has_source = up, True
            if up:
                row.down_since = None
            elif row.down_since is None:
                row.down_since = datetime.now(UTC)

    def snapshot(self) -> dict[str, DatasetStatus]:
        """A consistent copy of every row (the health API reads it from the HTTP thread)."""
        with self._lock:
            return {
                name: replace(row, results=dict(row.results), failing_since=dict(row.failing_since))
                for name, row in self._rows.items()
            }

    def render(self) -> Table:
        from rich.table import Table  # only the live display renders: a sidecar never loads rich

        now = datetime.now(UTC)
        table = Table(
            title=f"dqmon  alerts firing: {self.alerts_firing}  notifications: {self.notifications}",
            expand=False,
        )
        for column in (
            "dataset",
            "source",
            "batches",
            "rows seen",
            "last batch",
            "ok",
            "warn",
            "fail",
            "error",
            "failing checks",
        ):
            table.add_column(column)
        with self._lock:
            for name, row in sorted(self._rows.items()):
                counts = Counter(r.status for r in row.results.values())
                failing = [r.check for r in row.results.values() if r.status != Status.OK][:4]
                age = f"{(now - row.last_batch).total_seconds():.0f}s ago" if row.last_batch else "-"
                table.add_row(
                    name,
                    "[green]up[/]" if row.up else "[red]down[/]",
                    str(row.batches),
                    f"{row.rows_seen:,}",
                    age,
                    str(counts[Status.OK]),
                    f"[yellow]{counts[Status.WARN]}[/]" if counts[Status.WARN] else "0",
                    f"[red]{counts[Status.FAIL]}[/]" if counts[Status.FAIL] else "0",
                    f"[magenta]{counts[Status.ERROR]}[/]" if counts[Status.ERROR] else "0",
                    ", ".join(failing),
                )
        return table
