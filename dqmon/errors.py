"""The exception hierarchy: every error a user can cause is a DqmonError with context."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class DqmonError(Exception):
    """Root of every error dqmon raises on purpose."""


@dataclass(frozen=True)
class Location:
    """A place in a checks file; line and column are numbered from 1."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class ConfigProblem:
    """One reason a checks file was rejected."""

    location: Location
    path: str
    reason: str

    def __str__(self) -> str:
        where = str(self.location)
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


class ConfigError(DqmonError):
    """A checks directory or file was rejected as a whole; carries every problem found."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        lines = "\n".join(str(p) for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in checks:\n{lines}")


class SourceError(DqmonError):
    """A source could not be read (unreachable broker, failed query, ...)."""

    def __init__(self, message: str, *, code: str | None = None, retriable: bool = True) -> None:
        self.code = code
        self.retriable = retriable
        super().__init__(message if code is None else f"{message} (code {code})")


class CheckError(DqmonError):
    """A check could not be evaluated on a batch (it becomes an `error` result, never a crash)."""


class StateError(DqmonError):
    """The state store failed (baselines, alert states, outbox)."""


class NotifyError(DqmonError):
    """A notification could not be delivered; `retry_after` is a server's hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, permanent: bool = False) -> None:
        self.retry_after = retry_after
        self.permanent = permanent
        super().__init__(message)
