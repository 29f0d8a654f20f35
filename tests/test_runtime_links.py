"""Pipeline links inside the runtime (in-process): a plug-in link kind registered on LINK_KINDS
validates, runs on the sweep and is reported on its dataset; a dead store's scheduled link is an
error with source_up 0 and never stalls the datasets; a reload that drops the link drops its
pseudo-dataset from the health verdict."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from prometheus_client import CollectorRegistry

from dqmon.config.links import PairSpec
from dqmon.config.loader import load_checks
from dqmon.config.schema import checks_json_schema
from dqmon.config.settings import Settings
from dqmon.errors import ConfigError
from dqmon.pipeline.base import LinkCheck
from dqmon.pipeline.observe import BatchTimes
from dqmon.registry import LINK_KINDS
from dqmon.results import CheckResult, Status
from dqmon.runtime.app import Runtime
from tests.e2e_helpers import wait_until, write_trades


class RowsSpec(PairSpec):
    max_ratio: float


class RowsLink(LinkCheck[RowsSpec]):
    """A plug-in link: downstream rows seen per upstream row."""

    kind = "rows_ratio"
    spec_type = RowsSpec

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.rows = {self.spec.upstream: 0, self.spec.downstream: 0}

    def observe(self, dataset: str, times: BatchTimes) -> None:
        self.rows[dataset] += times.batch.df.height

    def evaluate(self, now: datetime) -> list[CheckResult]:
        up = self.rows[self.spec.upstream]
        ratio = self.rows[self.spec.downstream] / up if up else 0.0
        status = Status.OK if ratio <= self.spec.max_ratio else self.violation
        return [self.result(status, ratio, f"<= {self.spec.max_ratio}", f"ratio {ratio:.2f}")]


@pytest.fixture
def plugin() -> Iterator[None]:
    LINK_KINDS.register("rows_ratio", RowsLink)
    yield
    LINK_KINDS.unregister("rows_ratio")


CHECKS = """\
pipeline: p
alerts: {{for: 0s}}
datasets:
  - name: trades
    source: {{kind: replay, path: trades.ndjson, batch_rows: 50, loop: true}}
    window: 200ms
  - name: copy
    source: {{kind: replay, path: trades.ndjson, batch_rows: 25, loop: true}}
    window: 200ms
links:
{links}
"""


def _write(checks: Path, links: str) -> None:
    checks.mkdir(exist_ok=True)
    (checks / "p.yaml").write_text(CHECKS.format(links=links))


def test_a_plug_in_link_kind_validates_and_appears_in_the_schema(tmp_path: Path, plugin: None) -> None:
    _write(tmp_path, "  - rows_ratio: {upstream: trades, downstream: copy, max_ratio: 2}\n")
    assert load_checks(tmp_path, env={}).pipeline("p").links[0].kind == "rows_ratio"
    assert "rows_ratio" in checks_json_schema()["properties"]["links"]["items"]["properties"]
    _write(tmp_path, "  - rows_ratio: {upstream: trades, downstream: copy}\n")
    with pytest.raises(ConfigError) as info:
        load_checks(tmp_path, env={})
    [problem] = info.value.problems
    assert problem.path == "links[0].rows_ratio.max_ratio" and problem.location.line == 11


def test_links_run_in_the_runtime_and_a_dead_store_never_stalls_it(tmp_path: Path, plugin: None) -> None:
    checks = tmp_path / "checks"
    _write(
        checks,
        "  - rows_ratio: {upstream: trades, downstream: copy, max_ratio: 0.9}\n"
        "  - parity:\n"
        "      entity: account\n"
        "      features: [spend]\n"
        "      keys: [a, b]\n"
        "      every: 1s\n"
        "      online: {kind: redis, url: 'redis://127.0.0.1:1/0', socket_timeout: 500ms}\n"
        "      offline: {kind: parquet, path: history.parquet}\n",
    )
    write_trades(checks / "trades.ndjson")
    pl.DataFrame({"account": ["a"], "event_ts": [datetime(2026, 1, 1)], "spend": [1.0]}).write_parquet(
        checks / "history.parquet"
    )
    settings = Settings(data_dir=tmp_path / "data", http_host="127.0.0.1", http_port=0)  # type: ignore[call-arg]
    runtime = Runtime(checks, settings, registry=CollectorRegistry(), watch_files=False)
    runtime.start()
    try:

        def verdict(dataset: str) -> dict[str, object] | None:
            report = runtime.health("p")
            assert report is not None
            return next((d for d in report["datasets"] if d["dataset"] == dataset), None)

        # the plug-in link judges the copy (half the rows of trades): ok
        wait_until(lambda: (v := verdict("copy")) and v["status"] == "ok", 20, "the copy to be ok")
        # the dead online store: an error result, source down, the pipeline failing; rows keep flowing
        store = wait_until(
            lambda: (v := verdict("online_store")) and v["status"] == "failing" and v, 20, "parity error"
        )
        assert store["source_up"] is False
        [check] = store["failing_checks"]
        assert check["status"] == "error" and "online store (redis)" in check["message"]
        rows = runtime.board.snapshot()["p/trades"].rows_seen
        wait_until(
            lambda: runtime.board.snapshot()["p/trades"].rows_seen > rows + 200, 20, "rows still flowing"
        )

        # a reload without the parity link forgets its pseudo-dataset
        _write(checks, "  - rows_ratio: {upstream: trades, downstream: copy, max_ratio: 0.9}\n")
        assert runtime.reload()
        wait_until(
            lambda: verdict("online_store") is None and runtime.health("p")["status"] == "ok",
            20,
            "ok after reload",
        )  # type: ignore[index]
    finally:
        runtime.stop()
