"""Links in alerts: a Grafana dashboard URL scoped to the alert's labels and time range."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode


def grafana_link(base: str | None, labels: Mapping[str, str | None], since: float, at: float) -> str | None:
    """The dashboard from 15 minutes before `since` to 5 minutes after `at`, filtered by labels."""
    if not base:
        return None
    params = {f"var-{k}": v for k, v in labels.items() if k in ("pipeline", "dataset", "check") and v}
    params["from"] = str(int((since - 900) * 1000))
    params["to"] = str(int((at + 300) * 1000))
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}{urlencode(params)}"
