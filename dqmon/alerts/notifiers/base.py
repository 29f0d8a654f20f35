"""The notifier contract: deliver one outbox item, or raise NotifyError saying whether to retry."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, Protocol

from dqmon.config.settings import Settings
from dqmon.errors import NotifyError
from dqmon.state.outbox import OutboxItem
from dqmon.telemetry.logging import SecretRedactor


class Notifier(ABC):
    """Sends outbox items of the targets it serves (`name` is the part before the colon)."""

    name: str

    @abstractmethod
    def send(self, item: OutboxItem, thread_ref: str | None) -> str | None:
        """Deliver `item`; return a thread reference when a firing message opened a thread.

        `thread_ref` is the reference returned for the episode's firing message, if any.
        Raise NotifyError(retry_after=..., permanent=...) on failure; never leak secrets in it.
        """

    def serves(self, target: str) -> bool:
        """Whether `target` (`name` or `name:arg`) names something configured here; `dqmon run`
        rejects checks routing to a target no notifier serves (alerts.routing.unconfigured_targets).
        A notifier whose argument is free-form (a Slack channel) serves every target."""
        return True

    def update(self, item: OutboxItem, message_ref: str | None) -> None:
        """Bring an announced alert's message up to date (its failing parts changed).

        `message_ref` is the reference returned when the alert's own firing message was sent.
        Notifiers that cannot edit a message send the update as a message of its own.
        """
        self.send(item, None)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients."""


class NotifierFactory(Protocol):
    """What the notifier registry holds (dqmon.registry.NOTIFIERS): build the notifier from the
    runtime settings, or None when it is not configured (no token, no routing key).

    A notifier is one module: the Notifier class and `NOTIFIERS.register(name, factory)`; its
    name is the part before the colon of a route target (`slack:#chan`, `pagerduty`).
    """

    def __call__(self, settings: Settings) -> Notifier | None: ...


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


def redact_logger(name: str, secrets: Iterable[str]) -> logging.Logger:
    """Attach (once) the log redactor to logger `name` and register more secrets with it.

    `dqmon run` also redacts on its root handler; this filter covers third-party client loggers
    wherever their records end up (library use, tests, other handlers).
    """
    logger = logging.getLogger(name)
    existing = next((f for f in logger.filters if isinstance(f, SecretRedactor)), None)
    if existing is None:
        existing = SecretRedactor()
        logger.addFilter(existing)
    existing.add(secrets)
    return logger


def quiet_client_logger(name: str, secrets: Iterable[str]) -> logging.Logger:
    """A logger for an SDK client: INFO at least (slack-sdk logs request URLs and bodies at DEBUG
    whenever its logger's own level is NOTSET or DEBUG) and secrets redacted in what it does log."""
    logger = redact_logger(name, secrets)
    logger.setLevel(logging.INFO)
    return logger
