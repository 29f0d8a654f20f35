"""Slack notifiers through slack-sdk: a bot token (threads) or an incoming webhook (no threads).

With a bot token the firing message is posted with chat.postMessage and its (channel, ts) is
kept as the episode's thread reference in the state store; repeats are replies in that thread,
an `update` (the alert's failing parts changed) edits the alert's own message in place
(chat.update), and a resolve first edits the parent (idempotent, so a retry is harmless) and
then replies in the thread. An alert posted into another alert's thread (a grouped alert, or an
SLO burn inside the thread of the checks that spent the budget: payload `guest`) never edits that
thread's parent. Incoming webhooks return no ts, so each message stands alone and updates are
not sent (they would be new messages).

slack-sdk's own retry handlers are disabled: the delivery worker retries with backoff and
honours 429 Retry-After across the whole outbox. The token and the webhook URL never reach a
log line: the clients get an INFO-level logger with a redacting filter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.error import URLError

from dqmon.alerts.notifiers.base import Notifier, http_failure, parse_retry_after, quiet_client_logger
from dqmon.config.settings import Settings
from dqmon.errors import NotifyError
from dqmon.registry import NOTIFIERS
from dqmon.secrets import read_secret
from dqmon.state.outbox import OutboxItem

# Web API errors (HTTP 200, ok=false) worth retrying; any other error is permanent
_RETRYABLE_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
_ICON = {
    "firing": ":rotating_light:",
    "repeat": ":hourglass:",
    "update": ":rotating_light:",
    "resolved": ":white_check_mark:",
}


def fallback_text(p: Mapping[str, Any], event: str) -> str:
    where = "/".join(str(x) for x in (p.get("pipeline"), p.get("dataset"), p.get("check")) if x)
    return f"[{event.upper()}] [{p.get('severity')}] {where}: {p.get('message') or ''}".strip()


def alert_blocks(p: Mapping[str, Any], event: str) -> list[dict[str, Any]]:
    """Block Kit: what failed, observed vs threshold, the SLO at risk, since when, links, trace id."""
    title = f"{_ICON.get(event, '')} {event.upper()} [{p.get('severity')}] {p.get('pipeline')}"
    if p.get("dataset"):
        title += f" / {p.get('dataset')}"
    title += f" / {p.get('check')}"
    fields = [
        ("Pipeline", p.get("pipeline")),
        ("Dataset", p.get("dataset") or "-"),
        ("Check", f"{p.get('check')} ({p.get('kind')})"),
        ("Status", p.get("status")),
        ("Observed", _fmt(p.get("value"))),
        ("Threshold", p.get("threshold") or "-"),
        ("SLO at risk", p.get("slo_at_risk") or "-"),
        ("Since" if event != "resolved" else "Resolved at", p.get("since") or "-"),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"[:2000]} for k, v in fields]},
    ]
    if p.get("message"):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": str(p["message"])[:2900]}})
    if p.get("grafana_url"):
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in Grafana"},
                        "url": str(p["grafana_url"])[:3000],
                    }
                ],
            }
        )
    context = [f"fingerprint `{p.get('fingerprint')}`"]
    if p.get("trace_id"):
        context.append(f"trace id `{p.get('trace_id')}`")
    if p.get("owner"):
        context.append(f"owner {p.get('owner')}")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    return blocks


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class SlackBotNotifier(Notifier):
    """chat.postMessage / chat.update with a bot token; targets `slack:#channel` or `slack`."""

    name = "slack"

    def __init__(
        self,
        token: str,
        *,
        base_url: str = "https://slack.com/api/",
        default_channel: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        from slack_sdk import WebClient  # on first use: a sidecar without Slack never loads it (~3 MB)

        self._client = WebClient(
            token=token,
            base_url=base_url,
            timeout=max(1, round(timeout)),
            retry_handlers=[],
            logger=quiet_client_logger("dqmon.alerts.slack.sdk", [token]),
        )
        self._default_channel = default_channel

    def __repr__(self) -> str:
        return "SlackBotNotifier()"

    def send(self, item: OutboxItem, thread_ref: str | None) -> str | None:
        p = item.payload
        text = fallback_text(p, item.event)
        if thread_ref is None:
            channel = item.target.split(":", 1)[1] if ":" in item.target else self._default_channel
            if not channel:
                raise NotifyError(
                    "slack: no channel (set the pipeline owner or DQMON_SLACK_DEFAULT_CHANNEL)",
                    permanent=True,
                )
            resp = _call(
                "chat.postMessage",
                lambda: self._client.chat_postMessage(
                    channel=channel, text=text, blocks=alert_blocks(p, item.event), unfurl_links=False
                ),
            )
            return f"{resp['channel']} {resp['ts']}" if item.event == "firing" else None
        channel_id, ts = thread_ref.split(" ", 1)
        # the thread's parent turns resolved with its alert, or with the last alert of a group;
        # a guest in another alert's thread leaves that parent alone
        owner = not p.get("grouped") and not p.get("guest")
        if item.event == "resolved" and (owner or p.get("group_closed")):
            parent_text = text if owner else f"RESOLVED: all alerts of {p.get('pipeline')}"
            _call(
                "chat.update",
                lambda: self._client.chat_update(
                    channel=channel_id, ts=ts, text=parent_text, blocks=alert_blocks(p, "resolved")
                ),
            )
        resp = _call(
            "chat.postMessage",
            lambda: self._client.chat_postMessage(
                channel=channel_id, thread_ts=ts, text=text, blocks=alert_blocks(p, item.event)
            ),
        )
        # a firing reply is the alert's own message: kept so updates can edit it
        return f"{resp['channel']} {resp['ts']}" if item.event == "firing" else None

    def update(self, item: OutboxItem, message_ref: str | None) -> None:
        if message_ref is None:
            return  # the firing message never got through: nothing to edit
        p = item.payload
        channel_id, ts = message_ref.split(" ", 1)
        _call(
            "chat.update",
            lambda: self._client.chat_update(
                channel=channel_id, ts=ts, text=fallback_text(p, "firing"), blocks=alert_blocks(p, "firing")
            ),
        )


class SlackWebhookNotifier(Notifier):
    """An incoming webhook: every `slack...` target goes to the webhook's own channel."""

    name = "slack"

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        from slack_sdk.webhook import WebhookClient

        self._client = WebhookClient(
            url=url,
            timeout=max(1, round(timeout)),
            retry_handlers=[],
            logger=quiet_client_logger("dqmon.alerts.slack.webhook", [url]),
        )

    def __repr__(self) -> str:
        return "SlackWebhookNotifier()"

    def update(self, item: OutboxItem, message_ref: str | None) -> None:
        return None  # a webhook message cannot be edited; a new one would read as a new alert

    def send(self, item: OutboxItem, thread_ref: str | None) -> str | None:
        from slack_sdk.errors import SlackClientError

        try:
            resp = self._client.send(
                text=fallback_text(item.payload, item.event), blocks=alert_blocks(item.payload, item.event)
            )
        except (URLError, TimeoutError, OSError, SlackClientError) as exc:
            raise NotifyError(f"slack webhook: {type(exc).__name__}") from None
        if resp.status_code == 200:
            return None
        raise http_failure(
            "slack webhook", resp.status_code, _header(resp.headers, "retry-after"), str(resp.body)[:100]
        )


def _call(method: str, fn: Callable[[], Any]) -> Any:
    from slack_sdk.errors import SlackApiError, SlackClientError

    try:
        return fn()
    except SlackApiError as exc:
        resp = exc.response
        error = str(resp.get("error", "")) if isinstance(resp.data, dict) else ""
        if resp.status_code == 200:
            if error in _RETRYABLE_ERRORS:
                raise NotifyError(
                    f"slack {method}: {error}",
                    retry_after=parse_retry_after(_header(resp.headers, "retry-after")),
                ) from None
            raise NotifyError(f"slack {method}: {error or 'not ok'}", permanent=True) from None
        raise http_failure(
            f"slack {method}", resp.status_code, _header(resp.headers, "retry-after"), error
        ) from None
    except (URLError, TimeoutError, OSError, SlackClientError, ValueError) as exc:
        # network errors, timeouts and unparsable bodies (a proxy's HTML 502) are retried
        raise NotifyError(f"slack {method}: {type(exc).__name__}") from None


def _header(headers: Any, name: str) -> Any:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == name:
            return value
    return None


def _from_settings(settings: Settings) -> Notifier | None:
    """A bot token is preferred to a webhook: threads need chat.postMessage."""
    token = read_secret(settings.slack_token, settings.slack_token_file)
    if token:
        return SlackBotNotifier(
            token, base_url=settings.slack_api_url, default_channel=settings.slack_default_channel
        )
    webhook = read_secret(settings.slack_webhook_url, settings.slack_webhook_url_file)
    return SlackWebhookNotifier(webhook) if webhook else None


NOTIFIERS.register("slack", _from_settings)
