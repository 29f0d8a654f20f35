"""PagerDuty notifier: alert events of the Events API v2 (`POST {api}/v2/enqueue`).

One outbox item is one event. The `dedup_key` is the alert's fingerprint, so every event of an
alert lands on the same PagerDuty alert: `firing` and `repeat` are `trigger` (a repeat only adds
a log entry to the open alert; PagerDuty de-duplicates), `resolved` is `resolve`. After a
resolve, the next firing of the same fingerprint opens a new PagerDuty alert, as the API
specifies. dqmon never sends `acknowledge`: acknowledging is what a responder does in PagerDuty.

Severity: dqmon `page` → `critical`, `warn` → `warning`; anything else → `error`, so an alert
with an unexpected severity still reaches the service instead of being rejected with a 400.

Targets: `pagerduty` uses DQMON_PAGERDUTY_ROUTING_KEY (or `_FILE`), `pagerduty:NAME` the key NAME
of DQMON_PAGERDUTY_ROUTING_KEYS. Responses: 202 accepted; 400 is permanent (the event is
invalid and will stay invalid); 429 and 5xx are retried by the delivery worker, never sooner
than Retry-After. The routing key travels in the request body only: it never reaches a log
line, an error (PagerDuty's error text is redacted before it is kept) or this object's repr.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dqmon.alerts.notifiers.base import Notifier, http_failure, redact_logger
from dqmon.config.settings import Settings
from dqmon.errors import NotifyError
from dqmon.registry import NOTIFIERS
from dqmon.secrets import Redactor, read_secret
from dqmon.state.outbox import OutboxItem

if TYPE_CHECKING:
    import httpx

DEFAULT_KEY = "default"  # the key of the bare `pagerduty` target
SEVERITIES = {"page": "critical", "warn": "warning"}
ACTIONS = {"firing": "trigger", "repeat": "trigger", "resolved": "resolve"}
MAX_SUMMARY = 1024  # the API rejects longer summaries with a 400
# payload fields that are not details of the alert (rendered elsewhere, or internal)
_NOT_DETAILS = {"grafana_url", "grouped", "group_opened", "group_closed", "group_firing"}


def severity(dqmon_severity: Any) -> str:
    return SEVERITIES.get(str(dqmon_severity), "error")


def summary(p: Mapping[str, Any], event: str) -> str:
    where = "/".join(str(x) for x in (p.get("pipeline"), p.get("dataset"), p.get("check")) if x)
    text = f"[{event.upper()}] {where}: {p.get('message') or p.get('status') or ''}".strip()
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"


def event_body(item: OutboxItem, routing_key: str) -> dict[str, Any]:
    """The Events API v2 body for one outbox item (pure: tested without a server)."""
    action = ACTIONS.get(item.event)
    if action is None:
        raise NotifyError(f"pagerduty: no event action for {item.event!r}", permanent=True)
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action, "dedup_key": item.fingerprint}
    if action == "resolve":
        return body  # a resolve needs only the key: PagerDuty keeps the trigger's details
    p = item.payload
    pipeline = str(p.get("pipeline") or "dqmon")
    details = {k: v for k, v in p.items() if v is not None and k not in _NOT_DETAILS}
    body["payload"] = {
        "summary": summary(p, item.event),
        # PD-CEF: source = the affected system (the data product), component = the part that broke
        "source": f"{pipeline}/{p['dataset']}" if p.get("dataset") else pipeline,
        "severity": severity(p.get("severity")),
        "component": str(p.get("check") or ""),
        "group": pipeline,
        "class": str(p.get("kind") or "check"),
        "custom_details": details,
    }
    if p.get("at"):
        body["payload"]["timestamp"] = str(p["at"])
    body["client"] = "dqmon"
    if p.get("grafana_url"):
        body["client_url"] = str(p["grafana_url"])
        body["links"] = [{"href": str(p["grafana_url"]), "text": "Open in Grafana"}]
    return body


class PagerDutyNotifier(Notifier):
    """Events API v2 over httpx; targets `pagerduty` and `pagerduty:NAME`."""

    name = "pagerduty"

    def __init__(
        self,
        routing_keys: Mapping[str, str],
        *,
        api_url: str = "https://events.pagerduty.com",
        timeout: float = 10.0,
    ) -> None:
        self._keys = dict(routing_keys)
        self._url = api_url.rstrip("/") + "/v2/enqueue"
        self._redactor = Redactor(self._keys.values())
        # httpx logs the URL only, but a key pasted into DQMON_PAGERDUTY_API_URL must not leak either
        redact_logger("httpx", self._keys.values())
        import httpx  # on first use: a sidecar without PagerDuty never loads it

        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:
        return f"PagerDutyNotifier({sorted(self._keys)})"  # key names, never keys

    def serves(self, target: str) -> bool:
        return _key_name(target) in self._keys

    def send(self, item: OutboxItem, thread_ref: str | None) -> str | None:
        name = _key_name(item.target)
        key = self._keys.get(name)
        if key is None:
            raise NotifyError(
                f"pagerduty routing key {name!r} is not configured (DQMON_PAGERDUTY_ROUTING_KEY[S])",
                permanent=True,
            )
        import httpx

        try:
            resp = self._client.post(self._url, json=event_body(item, key))
        except httpx.HTTPError as exc:
            # network errors and timeouts are retried; the message may echo the request
            raise NotifyError(f"pagerduty {name}: {type(exc).__name__}") from None
        if resp.is_success:
            return None  # no thread: the dedup_key ties the events of an alert together
        raise http_failure(
            f"pagerduty {name}", resp.status_code, resp.headers.get("retry-after"), self._detail(resp)
        )

    def _detail(self, resp: httpx.Response) -> str:
        """PagerDuty's reason for a 400 (`errors`), redacted: it may quote the invalid field."""
        try:
            data = resp.json()
        except ValueError:
            return ""
        if not isinstance(data, dict):
            return ""
        errors = data.get("errors") or data.get("message") or ""
        text = "; ".join(map(str, errors)) if isinstance(errors, list) else str(errors)
        return self._redactor.redact(text)[:200]

    def close(self) -> None:
        self._client.close()


def _key_name(target: str) -> str:
    return target.split(":", 1)[1] if ":" in target else DEFAULT_KEY


def _from_settings(settings: Settings) -> Notifier | None:
    keys = {name: key.get_secret_value() for name, key in settings.pagerduty_routing_keys.items()}
    default = read_secret(settings.pagerduty_routing_key, settings.pagerduty_routing_key_file)
    if default:
        keys[DEFAULT_KEY] = default
    keys = {name: key.strip() for name, key in keys.items() if key.strip()}
    if not keys:
        return None
    return PagerDutyNotifier(keys, api_url=settings.pagerduty_api_url)


NOTIFIERS.register("pagerduty", _from_settings)
