"""Pipeline links at the unit level: latency and reconciliation judged from micro-batches, against
plain-Python references (hypothesis) for the binning and the gap."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dqmon.batch import MicroBatch
from dqmon.config.loader import load_checks
from dqmon.config.schema import checks_json_schema
from dqmon.pipeline.evaluator import PipelineLinks
from dqmon.results import Status

T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)
YAML = """\
pipeline: p
datasets:
  - name: trades
    source: {{kind: kafka, topic: t}}
    event_time: event_ts
  - name: counts_mv
    source: {{kind: sql, dsn: "postgresql://x/y", query: "select 1"}}
    event_time: minute
    fed_by: [trades]
links:
{links}
"""


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _links(tmp_path: Path, links: str, clock: Clock) -> PipelineLinks:
    (tmp_path / "p.yaml").write_text(YAML.format(links=links))
    config = load_checks(tmp_path, env={})
    return PipelineLinks(config.pipeline("p"), clock=clock)


def _batch(dataset: str, df: pl.DataFrame, at: datetime, seen: int | None = None) -> MicroBatch:
    return MicroBatch("p", dataset, df, at - timedelta(seconds=1), at, seen or df.height, df.height)


def _events(times: list[datetime], **extra: list[Any]) -> pl.DataFrame:
    return pl.DataFrame({"event_ts": times, **extra}, schema_overrides={"event_ts": pl.Datetime("us", "UTC")})


def test_links_load_validate_and_appear_in_the_schema(tmp_path: Path) -> None:
    clock = Clock(T0)
    links = _links(
        tmp_path,
        "  - latency: {upstream: trades, downstream: counts_mv, downstream_column: newest, max_behind: 30s}\n"
        "  - reconcile: {upstream: trades, downstream: counts_mv, bin: 1m, grace: 30s,"
        " downstream_count: n}\n",
        clock,
    )
    assert [link.kind for link in links.links] == ["latency", "reconcile"]
    schema = checks_json_schema()
    assert {"latency", "reconcile"} <= set(schema["properties"]["links"]["items"]["properties"])
    assert "fed_by" in schema["$defs"]["Dataset"]["properties"]


def test_latency_fires_when_the_view_trails_the_topic_and_not_when_the_topic_is_quiet(tmp_path: Path) -> None:
    clock = Clock(T0)
    links = _links(
        tmp_path,
        "  - latency: {upstream: trades, downstream: counts_mv, downstream_column: newest, "
        "max_behind: 30s, stage: feature job}\n",
        clock,
    )
    [waiting] = links.evaluate(clock.at)
    assert waiting.status == Status.OK and waiting.value is None
    view = pl.DataFrame({"minute": [T0], "newest": [T0 - timedelta(seconds=5)]})
    links.observe("trades", _batch("trades", _events([T0 - timedelta(seconds=1)]), T0))
    clock.at = T0 + timedelta(seconds=1)
    links.observe("counts_mv", _batch("counts_mv", view, clock.at))
    [ok] = links.evaluate(clock.at)
    assert ok.status == Status.OK and ok.dataset == "counts_mv" and ok.value == 4.0
    # the topic moves on 60 s, the view stays: 64 s behind, the feature job is named
    clock.at = T0 + timedelta(seconds=60)
    links.observe("trades", _batch("trades", _events([clock.at]), clock.at))
    clock.at += timedelta(seconds=1)
    links.observe("counts_mv", _batch("counts_mv", view, clock.at))
    [behind] = links.evaluate(clock.at)
    assert behind.status == Status.FAIL and behind.value == 65.0
    assert "stage feature job is behind" in behind.message and "counts_mv" in behind.message
    # the topic goes quiet and the view catches up: latency is ok (freshness would speak instead)
    view2 = pl.DataFrame({"minute": [T0], "newest": [T0 + timedelta(seconds=60)]})
    for _ in range(3):
        clock.at += timedelta(seconds=30)
        links.observe("counts_mv", _batch("counts_mv", view2, clock.at))
    [caught_up] = links.evaluate(clock.at)
    assert caught_up.status == Status.OK and caught_up.value == 0.0


def test_latency_compares_with_the_topic_as_it_was_when_the_view_was_read(tmp_path: Path) -> None:
    clock = Clock(T0)
    links = _links(
        tmp_path,
        "  - latency: {upstream: trades, downstream: counts_mv, downstream_column: newest, max_behind: 5s}\n",
        clock,
    )
    for s in range(0, 31):
        clock.at = T0 + timedelta(seconds=s)
        links.observe("trades", _batch("trades", _events([clock.at]), clock.at))
        if s == 10:  # the view is read once, in sync with the topic at that moment
            links.observe(
                "counts_mv",
                _batch("counts_mv", pl.DataFrame({"minute": [T0], "newest": [clock.at]}), clock.at),
            )
    [result] = links.evaluate(clock.at)
    assert result.status == Status.OK and result.value == 0.0


def _reference_gaps(
    up: list[float], down: dict[int, float], width: float, first: int, last: int, tol: float, abs_tol: float
) -> list[tuple[int, float]]:
    """Plain Python: per bin in [first, last], downstream - upstream count where it exceeds the tolerance."""
    counts = Counter(math.floor(t / width) for t in up)
    out = []
    for b in range(first, last + 1):
        gap = down.get(b, 0.0) - counts.get(b, 0)
        if abs(gap) > max(abs_tol, tol * counts.get(b, 0)):
            out.append((b, gap))
    return out


@settings(max_examples=60, deadline=None)
@given(
    offsets=st.lists(st.floats(0, 600, allow_nan=False), min_size=1, max_size=300),
    drop=st.sets(st.integers(0, 299), max_size=40),
    extra=st.dictionaries(st.integers(0, 12), st.integers(1, 3), max_size=3),
    batches=st.integers(1, 5),
    tolerance=st.sampled_from([0.0, 0.05, 0.5]),
)
def test_reconcile_matches_a_plain_reference(
    tmp_path_factory: Any,
    offsets: list[float],
    drop: set[int],
    extra: dict[int, int],
    batches: int,
    tolerance: float,
) -> None:
    tmp = tmp_path_factory.mktemp("rec")
    clock = Clock(T0)
    width = 60.0
    links = _links(
        tmp,
        f"  - reconcile: {{upstream: trades, downstream: counts_mv, bin: 1m, grace: 30s, "
        f"downstream_count: n, tolerance: {tolerance}, judge_bins: 15}}\n",
        clock,
    )
    base = T0.timestamp()
    times = sorted(base + o for o in offsets)
    # the topic arrives in `batches` chunks; the first record sets the first complete bin
    chunk = max(1, math.ceil(len(times) / batches))
    for i in range(0, len(times), chunk):
        part = times[i : i + chunk]
        at = datetime.fromtimestamp(part[-1], UTC)
        links.observe("trades", _batch("trades", _events([datetime.fromtimestamp(t, UTC) for t in part]), at))
    # the view aggregates what survived the stream processor, plus some duplicated rows
    kept = [t for i, t in enumerate(times) if i not in drop]
    down = {b: float(n) for b, n in Counter(math.floor(t / width) for t in kept).items()}
    first_bin = math.floor(times[min(chunk, len(times)) - 1] / width) + 1  # after the first batch closed
    for k, n in extra.items():
        down[first_bin + k] = down.get(first_bin + k, 0.0) + n
    clock.at = datetime.fromtimestamp(base + 720, UTC)
    view = pl.DataFrame(
        {"minute": [datetime.fromtimestamp(b * width, UTC) for b in down], "n": list(down.values())}
    )
    links.observe("trades", _batch("trades", _events([]), clock.at))
    links.observe("counts_mv", _batch("counts_mv", view, clock.at))
    [result] = links.evaluate(clock.at)
    last = math.floor((clock.at.timestamp() - 30) / width) - 1
    judged_first = max(first_bin, last - 14)
    if judged_first > last:  # the first batch closed too late for any bin to be complete yet
        assert result.status == Status.OK and result.value is None
        return
    expected = _reference_gaps(times, down, width, judged_first, last, tolerance, 0.0)
    got = [
        (datetime.fromisoformat(str(e["bin"])).timestamp() / width, e["gap"])
        for e in result.details["bins_off"]
    ]
    assert got == [(float(b), g) for b, g in expected]
    assert result.status == (Status.FAIL if expected else Status.OK)


def test_reconcile_reports_missing_rows_and_resolves_when_recent_bins_reconcile(tmp_path: Path) -> None:
    clock = Clock(T0)
    links = _links(
        tmp_path,
        "  - reconcile: {upstream: trades, downstream: counts_mv, bin: 10s, grace: 5s, "
        "downstream_count: n, sum: qty, downstream_sum: qty_sum, stage: counts job}\n",
        clock,
    )
    view: dict[int, tuple[float, float]] = {}
    results = []
    for second in range(0, 90):
        clock.at = T0 + timedelta(seconds=second)
        times = [clock.at + timedelta(milliseconds=100 * i) for i in range(10)]
        links.observe("trades", _batch("trades", _events(times, qty=[1.0] * 10), clock.at))
        b = math.floor(clock.at.timestamp() / 10)
        lost = 3 if 30 <= second < 40 else 0  # the counts job drops 3 events a second for 10 s
        n, q = view.get(b, (0.0, 0.0))
        view[b] = (n + 10 - lost, q + 10 - lost)
        frame = pl.DataFrame(
            {
                "minute": [datetime.fromtimestamp(k * 10, UTC) for k in view],
                "n": [v[0] for v in view.values()],
                "qty_sum": [v[1] for v in view.values()],
            }
        )
        links.observe("counts_mv", _batch("counts_mv", frame, clock.at))
        results.append(links.evaluate(clock.at)[0])
    statuses = [r.status for r in results]
    failing = [i for i, s in enumerate(statuses) if s == Status.FAIL]
    # the bad bin [30, 40) is judged once it ended 5 s ago, for 3 bins' worth of evaluations
    assert failing and failing[0] == 45 and failing[-1] == 74
    bad = results[failing[0]]
    assert bad.value == 30.0 and bad.details["count_gap"] == -30.0
    assert "stage counts job" in bad.message and "30 rows missing in counts_mv" in bad.message
    assert "sum(qty) off by -30" in bad.message and bad.details["sum_gap"] == -30.0
    assert bad.details["bins_off"][0]["sum_gap"] == -30.0
    assert statuses[-1] == Status.OK


def test_reconcile_state_is_bounded(tmp_path: Path) -> None:
    clock = Clock(T0)
    links = _links(
        tmp_path,
        "  - reconcile: {upstream: trades, downstream: counts_mv, bin: 1s, grace: 1s, max_bins: 10}\n",
        clock,
    )
    for second in range(500):
        clock.at = T0 + timedelta(seconds=second)
        links.observe("trades", _batch("trades", _events([clock.at]), clock.at))
    link: Any = links.links[0]
    assert len(link._up.counts) == 10


def test_reconcile_scales_sampled_upstream_counts(tmp_path: Path) -> None:
    clock = Clock(T0)
    links = _links(
        tmp_path,
        "  - reconcile: {upstream: trades, downstream: counts_mv, bin: 1m, grace: 1s, downstream_count: n}\n",
        clock,
    )
    times = [T0 + timedelta(seconds=61 + i * 0.1) for i in range(10)]
    links.observe("trades", _batch("trades", _events(times), T0 + timedelta(seconds=62), seen=40))
    link: Any = links.links[0]
    assert sum(link._up.counts.values()) == 40.0


def test_a_links_for_and_notify_apply_to_its_alert(tmp_path: Path) -> None:
    from dqmon.alerts.manager import AlertManager
    from dqmon.results import CheckResult
    from dqmon.state.store import MemoryStateStore

    (tmp_path / "p.yaml").write_text(
        YAML.format(
            links="  - latency: {upstream: trades, downstream: counts_mv, max_behind: 5s, for: 1m, "
            "notify: ['webhook:ops']}\n"
        )
    )
    manager = AlertManager(load_checks(tmp_path, env={}).pipeline("p"), MemoryStateStore())

    def latency(status: Status) -> CheckResult:
        return CheckResult("p", "counts_mv", "latency", "latency", status, 9.0, "<= 5s", "behind")

    t0 = T0.timestamp()
    assert manager.observe([latency(Status.FAIL)], t0) == []
    assert manager.observe([latency(Status.FAIL)], t0 + 30) == []  # pending: `for: 1m`
    [fired] = manager.observe([latency(Status.FAIL)], t0 + 61)
    assert fired.event == "firing" and fired.target == "webhook:ops"


def test_reconcile_of_two_streams_adds_up_both_sides(tmp_path: Path) -> None:
    """Topic → topic (an enrichment job): downstream batches are increments, not snapshots."""
    (tmp_path / "p.yaml").write_text(
        YAML.replace('kind: sql, dsn: "postgresql://x/y", query: "select 1"', "kind: kafka, topic: enriched")
        .replace("event_time: minute", "event_time: event_ts")
        .format(links="  - reconcile: {upstream: trades, downstream: counts_mv, bin: 10s, grace: 2s}\n")
    )
    clock = Clock(T0)
    links = PipelineLinks(load_checks(tmp_path, env={}).pipeline("p"), clock=clock)
    link: Any = links.links[0]
    assert link.snapshot is False
    results = []
    for second in range(70):
        clock.at = T0 + timedelta(seconds=second)
        events = _events([clock.at + timedelta(milliseconds=100 * i) for i in range(5)])
        links.observe("trades", _batch("trades", events, clock.at))
        # the enrichment job loses one event a second between 20 s and 30 s
        kept = events.head(4) if 20 <= second < 30 else events
        links.observe("counts_mv", _batch("counts_mv", kept, clock.at))
        results.append(links.evaluate(clock.at)[0])
    failing = [i for i, r in enumerate(results) if r.status == Status.FAIL]
    assert failing and failing[0] == 32 and results[failing[0]].details["count_gap"] == -10.0
    # bin [20 s, 30 s) ages out once three newer bins are complete (judge_bins: 3)
    assert failing[-1] == 61 and results[-1].status == Status.OK
