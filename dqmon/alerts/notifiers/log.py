"""Log notifier: one structured log line per notification (the default without Slack)."""

from __future__ import annotations

import json
import logging

from dqmon.alerts.notifiers.base import Notifier
from dqmon.config.settings import Settings
from dqmon.registry import NOTIFIERS
from dqmon.state.outbox import OutboxItem

alert_log = logging.getLogger("dqmon.alerts.notifications")


class LogNotifier(Notifier):
    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or alert_log

    def send(self, item: OutboxItem, thread_ref: str | None) -> str | None:
        p = item.payload
        level = logging.INFO if item.event in ("resolved", "update") else logging.WARNING
        self.logger.log(
            level,
            "alert %s: %s/%s/%s %s (value %s, threshold %s) %s",
            item.event.upper(),
            p.get("pipeline"),
            p.get("dataset") or "-",
            p.get("check"),
            p.get("status"),
            p.get("value"),
            p.get("threshold"),
            p.get("message"),
            extra={"alert": json.loads(json.dumps(dict(p), default=str)), "fingerprint": item.fingerprint},
        )
        return None


def _from_settings(settings: Settings) -> Notifier:
    return LogNotifier()  # always available: routes without another notifier still reach someone


NOTIFIERS.register("log", _from_settings)
