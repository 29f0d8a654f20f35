"""Runtime settings from DQMON_* environment variables (secrets as SecretStr, never logged)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where dqmon keeps state and which endpoints it talks to; every endpoint is configurable."""

    model_config = SettingsConfigDict(env_prefix="DQMON_", frozen=True, extra="ignore")

    data_dir: Path = Field(Path(".dqmon"), description="SQLite state store and other local state")
    state_dsn: SecretStr | None = Field(
        None, description="postgresql://... to keep state in PostgreSQL (shared by replicas)"
    )
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="default bootstrap servers")
    http_host: str = "0.0.0.0"  # noqa: S104 - a sidecar's probes and scrapes arrive on the pod IP
    http_port: int = Field(9464, ge=0, le=65535, description="/metrics, /healthz, /readyz")
    slack_token: SecretStr | None = Field(None, description="bot token for chat.postMessage")
    slack_webhook_url: SecretStr | None = Field(None, description="incoming-webhook URL")
    slack_token_file: Path | None = Field(None, description="file holding the bot token (a mounted secret)")
    slack_webhook_url_file: Path | None = Field(None, description="file holding the incoming-webhook URL")
    slack_api_url: str = Field("https://slack.com/api/", description="Slack Web API base URL")
    slack_default_channel: str | None = None
    webhook_urls: dict[str, SecretStr] = Field(
        default_factory=dict, description='generic webhooks by name, JSON: {"default": "https://..."}'
    )
    pagerduty_routing_key: SecretStr | None = Field(
        None, description="Events API v2 integration key for the `pagerduty` target"
    )
    pagerduty_routing_key_file: Path | None = Field(None, description="file holding that routing key")
    pagerduty_routing_keys: dict[str, SecretStr] = Field(
        default_factory=dict, description='routing keys for `pagerduty:NAME` targets, JSON: {"db": "..."}'
    )
    pagerduty_api_url: str = Field("https://events.pagerduty.com", description="Events API base URL")
    grafana_url: str | None = Field(None, description="Grafana base URL for links in alerts")
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    replicas: Literal["auto", "off"] = Field(
        "auto",
        description="auto: Kafka datasets in `mode: group` with DQMON_STATE_DSN set are judged once per"
        " pipeline from every replica's partial states (docs/operations.md, Scaling); off: each replica"
        " judges what it reads",
    )
    max_queue_batches: int = Field(8, ge=1, description="bounded queue of micro-batches per dataset")
    trim_startup_pages_after: float = Field(
        60.0,
        ge=0,
        description="seconds after start to hand the kernel back code pages only starting up touched"
        " (RSS then shows the working set; docs/performance.md); 0: never",
    )
