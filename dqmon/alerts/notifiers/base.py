"""The notifier contract: deliver one outbox item, or raise NotifyError saying whether to retry."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from dqmon.errors import NotifyError
from dqmon.state.outbox import OutboxItem


class Notifier(ABC):
    """Sends outbox items of the targets it serves (`name` is the part before the colon)."""

    name: str

    @abstractmethod
    def send(self, item: OutboxItem, thread_ref: str | None) -> str | None:
        """Deliver `item`; return a thread reference when a firing message opened a thread.

        `thread_ref` is the reference returned for the episode's firing message, if any.
        Raise NotifyError(retry_after=..., permanent=...) on failure; never leak secrets in it.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients."""


def http_failure(service: str, status: int, retry_after: Any = None, detail: str = "") -> NotifyError:
    """Classify an HTTP status: 429 and 5xx are retried (honouring Retry-After), other 4xx are not."""
    hint = parse_retry_after(retry_after)
    text = f"{service}: HTTP {status}" + (f" {detail}" if detail else "")
    if status == 429 or status >= 500 or status in (408, 409):
        return NotifyError(text, retry_after=hint)
    return NotifyError(text, permanent=True)


def parse_retry_after(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    try:
        seconds = float(str(value).strip())
    except (TypeError, ValueError):
        return None  # HTTP-date form: fall back to our own backoff
    return max(0.0, seconds)


class RedactingFilter(logging.Filter):
    """Replaces secrets in log records of third-party clients (the webhook URL is a secret)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(s in text for s in self._secrets):
            for s in self._secrets:
                text = text.replace(s, "(redacted)")
            record.msg, record.args = text, None
        return True


def quiet_client_logger(name: str, secrets: Iterable[str]) -> logging.Logger:
    """A logger for an SDK client: INFO at least (slack-sdk logs request URLs and bodies at DEBUG
    whenever its logger's own level is NOTSET or DEBUG) and secrets redacted in what it does log."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.filters = [f for f in logger.filters if not isinstance(f, RedactingFilter)]
    logger.addFilter(RedactingFilter(secrets))
    return logger
