"""Generic JSON webhook: POST the notification payload to a configured URL (a secret).

Each request carries an `Idempotency-Key` header (the outbox item id and fingerprint) so a
receiver can drop the duplicate that an ambiguous failure (a timeout after the receiver
accepted the request) may cause: delivery is at-least-once, the key makes it effectively once.
"""

from __future__ import annotations

from collections.abc import Mapping

from dqmon.alerts.notifiers.base import Notifier, http_failure, redact_logger
from dqmon.config.settings import Settings
from dqmon.errors import NotifyError
from dqmon.registry import NOTIFIERS
from dqmon.state.outbox import OutboxItem


class WebhookNotifier(Notifier):
    name = "webhook"

    def __init__(self, urls: Mapping[str, str], *, timeout: float = 10.0) -> None:
        self._urls = dict(urls)
        # httpx logs "HTTP Request: POST <url>" at INFO: the URL often embeds a token
        redact_logger("httpx", self._urls.values())
        import httpx  # on first use: a sidecar without webhooks never loads it

        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:
        return f"WebhookNotifier({sorted(self._urls)})"  # names only: URLs often embed a token

    def serves(self, target: str) -> bool:
        return _name(target) in self._urls

    def send(self, item: OutboxItem, thread_ref: str | None) -> str | None:
        name = _name(item.target)
        url = self._urls.get(name)
        if url is None:
            raise NotifyError(f"webhook {name!r} is not configured (DQMON_WEBHOOK_URLS)", permanent=True)
        body = {
            "event": item.event,
            "id": item.id,
            "thread_key": item.thread_key,
            "alert": dict(item.payload),
        }
        import httpx

        try:
            resp = self._client.post(
                url, json=body, headers={"Idempotency-Key": f"{item.id}-{item.fingerprint}"}
            )
        except httpx.HTTPError as exc:
            # httpx messages can contain the URL: report the exception class only
            raise NotifyError(f"webhook {name}: {type(exc).__name__}") from None
        if resp.is_success:
            return None
        raise http_failure(f"webhook {name}", resp.status_code, resp.headers.get("retry-after"))

    def close(self) -> None:
        self._client.close()


def _name(target: str) -> str:
    return target.split(":", 1)[1] if ":" in target else "default"


def _from_settings(settings: Settings) -> Notifier | None:
    if not settings.webhook_urls:
        return None
    return WebhookNotifier({name: url.get_secret_value() for name, url in settings.webhook_urls.items()})


NOTIFIERS.register("webhook", _from_settings)
