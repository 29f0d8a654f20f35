"""Each check flags a batch with the defect it targets and passes a clean one."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dqmon.results import Status
from dqmon.state.store import MemoryStateStore, SqliteStateStore
from tests.checks_helpers import NOW, Clock, batch, by_check, engine, statuses, trades

VALIDITY = {
    "validity": {
        "not_null": ["trade_id", "price"],
        "null_rate": {"venue": 0.5},
        "range": {"price": {"gt": 0}, "qty": {"gt": 0, "le": 10}},
        "in_set": {"side": ["buy", "sell"]},
        "regex": {"symbol": "^[A-Z]+-USDT$"},
        "unique": "trade_id",
    }
}


def test_clean_batch_passes_every_check() -> None:
    e = engine(
        [
            {"freshness": {"max_lag": "30s"}},
            {"volume": {"min": 10, "max": 10_000}},
            {"schema": {"contract": {"fields": {"price": {"type": "float", "nullable": False}}}}},
            VALIDITY,
            {"sql": {"query": "select count(*) as value from batch where qty <= 0", "max": 0}},
        ]
    )
    results = e.evaluate(batch(trades()))
    assert {r.check: r.status for r in results if r.status != Status.OK} == {}
    assert len(results) == 1 + 1 + 3 + 8 + 1


def test_freshness_flags_late_events_and_reports_lags() -> None:
    clock = Clock()
    e = engine([{"freshness": {"max_lag": "30s", "stat": "p99"}}], clock=clock)
    ok = by_check(e.evaluate(batch(trades(lag=5))))["freshness"]
    assert ok.status == Status.OK and 0 < ok.value <= 5
    late = by_check(e.evaluate(batch(trades(now=NOW - timedelta(seconds=90)))))["freshness"]
    assert late.status == Status.FAIL and late.value == pytest.approx(92, abs=2.1)
    assert late.details["lag_newest_seconds"] >= 90


def test_freshness_ingest_lag_from_kafka_timestamp() -> None:
    e = engine([{"freshness": {"max_lag": "1h", "max_ingest_lag": "10s"}}])
    df = trades().with_columns((pl.col("event_ts") + pl.duration(seconds=20)).alias("_timestamp"))
    result = by_check(e.evaluate(batch(df)))["freshness"]
    assert result.status == Status.FAIL and "ingest lag" in result.message
    assert result.details["ingest_lag_p99_seconds"] == pytest.approx(20, abs=1e-3)


def test_freshness_parses_string_and_epoch_millis_event_times() -> None:
    e = engine([{"freshness": {"max_lag": "30s", "stat": "newest"}}])
    iso = trades().with_columns(pl.col("event_ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ"))
    assert by_check(e.evaluate(batch(iso)))["freshness"].value == pytest.approx(0, abs=0.01)
    millis = trades().with_columns(pl.col("event_ts").dt.epoch("ms"))
    assert by_check(e.evaluate(batch(millis)))["freshness"].value == pytest.approx(0, abs=0.01)


def test_freshness_goes_stale_on_silence_and_recovers() -> None:
    clock = Clock()
    e = engine([{"freshness": {"max_lag": "30s", "max_silence": "10s"}}], clock=clock)
    assert by_check(e.evaluate(batch(trades())))["freshness"].status == Status.OK
    clock.advance(5)
    quiet = by_check(e.evaluate(batch(pl.DataFrame())))["freshness"]
    assert quiet.status == Status.OK and "no records" in quiet.message
    clock.advance(10)
    assert e.sweep(clock()) and e.sweep(clock())[0].status == Status.FAIL
    stale = by_check(e.evaluate(batch(pl.DataFrame())))["freshness"]
    assert stale.status == Status.FAIL and stale.value == pytest.approx(15, abs=0.1)
    assert by_check(e.evaluate(batch(trades(now=clock()))))["freshness"].status == Status.OK
    assert e.sweep(clock()) == []


def test_freshness_silence_survives_restart(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteStateStore(tmp_path / "state.db")
    engine([{"freshness": {"max_lag": "30s"}}], clock=clock, store=store).evaluate(batch(trades()))
    clock.advance(60)
    restarted = engine(
        [{"freshness": {"max_lag": "30s"}}], clock=clock, store=SqliteStateStore(tmp_path / "state.db")
    )
    (stale,) = restarted.sweep(clock())
    assert stale.status == Status.FAIL and stale.value == pytest.approx(60, abs=0.1)


def test_volume_bounds_and_produced_count() -> None:
    e = engine([{"volume": {"min": 500, "max": 2000}}])
    assert by_check(e.evaluate(batch(trades(1000))))["volume"].status == Status.OK
    low = by_check(e.evaluate(batch(trades(100))))["volume"]
    assert low.status == Status.FAIL and low.value == 100 and "below" in low.message
    # at 1% sampling the broker's watermark count is what volume judges
    sampled = by_check(e.evaluate(batch(trades(10), seen=10, produced=1000)))["volume"]
    assert sampled.status == Status.OK and sampled.details["counted"] == "produced"


def test_volume_anomaly_needs_history_then_flags_a_drop() -> None:
    clock = Clock()
    e = engine([{"volume": {"anomaly": {"min_history": 10, "sensitivity": 4}}}], clock=clock)
    rng = np.random.default_rng(3)
    for _ in range(9):
        clock.advance(5)
        r = by_check(e.evaluate(batch(trades(1), seen=int(rng.normal(1000, 30)))))["volume"]
        assert r.status == Status.OK
    assert "learning" in r.details["anomaly"]
    for _ in range(5):
        clock.advance(5)
        assert (
            by_check(e.evaluate(batch(trades(1), seen=int(rng.normal(1000, 30)))))["volume"].status
            == Status.OK
        )
    drop = by_check(e.evaluate(batch(trades(1), seen=300)))["volume"]
    assert drop.status == Status.FAIL and "below" in drop.message and drop.details["z"] < -4


def test_volume_anomaly_seasonality_compares_same_hour() -> None:
    clock = Clock()
    e = engine([{"volume": {"anomaly": {"min_history": 5, "seasonality": "hour_of_day"}}}], clock=clock)
    # busy at 12:00, quiet at 13:00 on five days
    for _day in range(5):
        for hour, count in ((0, 5000), (1, 100)):
            at = clock.at + timedelta(hours=hour)
            e.evaluate(batch(trades(1, now=at), now=at, seen=count))
        clock.advance(86400)
    quiet_hour = clock.at + timedelta(hours=1)
    assert by_check(e.evaluate(batch(trades(1), now=quiet_hour, seen=110)))["volume"].status == Status.OK
    assert by_check(e.evaluate(batch(trades(1), now=quiet_hour, seen=5000)))["volume"].status == Status.FAIL


def test_schema_contract_violations_named() -> None:
    contract = {
        "fields": {
            "price": {"type": "float", "nullable": False},
            "trade_id": {"type": "string"},
            "missing_field": {"type": "int"},
            "qty": {"type": "string"},
        }
    }
    e = engine([{"schema": {"contract": contract}}])
    df = trades().with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise(pl.col("price")).alias("price")
    )
    result = by_check(e.evaluate(batch(df)))["schema"]
    assert result.status == Status.FAIL
    assert result.details["missing"] == ["missing_field"]
    assert set(result.details["wrong_type"]) == {"qty"}
    assert result.details["nulls"] == {"price": 3}


def test_schema_drift_added_removed_retyped_by_name() -> None:
    e = engine([{"schema": {"on_drift": "fail"}}])
    assert by_check(e.evaluate(batch(trades())))["schema:drift"].message.startswith("learned")
    assert by_check(e.evaluate(batch(trades(seed=1))))["schema:drift"].status == Status.OK
    drifted = trades().drop("venue").with_columns(pl.col("price").cast(pl.String), pl.lit(1).alias("fee"))
    result = by_check(e.evaluate(batch(drifted)))["schema:drift"]
    assert result.status == Status.FAIL
    assert result.details["added"] == ["fee"] and result.details["removed"] == ["venue"]
    assert result.details["retyped"] == {"price": "number → string"}
    # metadata columns from the source never count as drift
    with_meta = trades().with_columns(pl.lit(0).alias("_partition"), pl.lit(1).alias("_offset"))
    assert by_check(e.evaluate(batch(with_meta)))["schema:drift"].status == Status.OK


def test_schema_drift_accepted_after_persisting() -> None:
    clock = Clock()
    e = engine([{"schema": {"accept_after": "1m"}}], clock=clock)
    e.evaluate(batch(trades()))
    drifted = trades().with_columns(pl.lit("x").alias("extra"))
    assert by_check(e.evaluate(batch(drifted)))["schema:drift"].status == Status.WARN
    clock.advance(61)
    assert "accepted" in by_check(e.evaluate(batch(drifted)))["schema:drift"].message
    assert by_check(e.evaluate(batch(drifted)))["schema:drift"].status == Status.OK


def test_schema_decode_error_rate() -> None:
    e = engine([{"schema": {"max_decode_error_rate": 0.01}}])
    ok = by_check(e.evaluate(batch(trades(1000), decode_errors={"invalid_json": 5})))["schema:decode_errors"]
    assert ok.status == Status.OK
    bad = by_check(e.evaluate(batch(trades(100), decode_errors={"invalid_json": 5, "empty": 5})))
    assert bad["schema:decode_errors"].status == Status.FAIL
    assert bad["schema:decode_errors"].value == pytest.approx(10 / 110)


@pytest.mark.parametrize("metric", ["psi", "ks"])
def test_distribution_rolling_reference_detects_shift(metric: str) -> None:
    clock = Clock()
    e = engine(
        [{"distribution": {"column": "price", "metric": metric, "max": 0.2, "reference": "rolling_1h"}}],
        clock=clock,
    )
    first = by_check(e.evaluate(batch(trades(seed=0))))["distribution"]
    assert first.status == Status.OK and "insufficient" in first.message
    for seed in range(1, 4):
        clock.advance(5)
        assert by_check(e.evaluate(batch(trades(seed=seed))))["distribution"].status == Status.OK
    clock.advance(5)
    shifted = by_check(e.evaluate(batch(trades(seed=9, shift=15))))["distribution"]
    assert shifted.status == Status.FAIL and shifted.value > 0.2


def test_distribution_by_segment_names_the_shifted_segment() -> None:
    clock = Clock()
    e = engine(
        [{"distribution": {"column": "price", "by": "symbol", "max": 0.3, "reference": "rolling_1h"}}],
        clock=clock,
    )
    for seed in range(3):
        clock.advance(5)
        e.evaluate(batch(trades(seed=seed)))
    df = trades(seed=5).with_columns(
        pl.when(pl.col("symbol") == "ETH-USDT")
        .then(pl.col("price") * 1.3)
        .otherwise(pl.col("price"))
        .alias("price")
    )
    result = by_check(e.evaluate(batch(df)))["distribution"]
    assert result.status == Status.FAIL
    assert "symbol=ETH-USDT" in result.message
    assert result.details["worst_segments"]["BTC-USDT"] < 0.3


def test_distribution_categorical_unseen_and_file_reference(tmp_path: Path) -> None:
    trades(2000, seed=1).write_parquet(tmp_path / "ref.parquet")
    from dqmon.engine import DatasetEngine
    from tests.checks_helpers import pipeline

    p = pipeline(
        [
            {
                "distribution": {
                    "name": "venues",
                    "column": "venue",
                    "metric": "unseen",
                    "max": 0.05,
                    "reference": "file:ref.parquet",
                }
            },
            {
                "distribution": {
                    "name": "sides",
                    "column": "side",
                    "metric": "chi2",
                    "max": 0.01,
                    "reference": {"file": "ref.parquet"},
                }
            },
        ]
    )
    e = DatasetEngine(p, p.datasets[0], base_dir=tmp_path, store=MemoryStateStore(), clock=Clock())
    assert statuses(e.evaluate(batch(trades()))) == {"venues": Status.OK, "sides": Status.OK}
    odd = trades().with_columns(
        pl.when(pl.int_range(pl.len()) % 5 == 0)
        .then(pl.lit("newvenue"))
        .otherwise(pl.col("venue"))
        .alias("venue"),
        pl.when(pl.int_range(pl.len()) % 3 == 0).then(pl.lit("buy")).otherwise(pl.col("side")).alias("side"),
    )
    results = by_check(e.evaluate(batch(odd)))
    assert results["venues"].status == Status.FAIL and results["venues"].details["unseen_examples"] == [
        "newvenue"
    ]
    assert results["sides"].status == Status.FAIL and results["sides"].details["p_value"] < 1e-6


def test_validity_rules_each_flag_their_defect() -> None:
    e = engine([VALIDITY])
    n = 1000
    df = (
        trades(n)
        .with_columns(
            pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col("trade_id")).alias("trade_id"),
            pl.when(pl.int_range(pl.len()) == 1).then(-1.0).otherwise(pl.col("price")).alias("price"),
            pl.when(pl.int_range(pl.len()) == 2).then(float("nan")).otherwise(pl.col("qty")).alias("qty"),
            pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("hold")).otherwise(pl.col("side")).alias("side"),
            pl.when(pl.int_range(pl.len()) == 4)
            .then(pl.lit("btc"))
            .otherwise(pl.col("symbol"))
            .alias("symbol"),
            pl.lit(None, dtype=pl.String).alias("venue"),
        )
        .with_columns(
            pl.when(pl.int_range(pl.len()) == 5)
            .then(pl.lit("t0-6"))
            .otherwise(pl.col("trade_id"))
            .alias("trade_id")
        )
    )
    got = by_check(e.evaluate(batch(df)))
    assert {k: v.status for k, v in got.items() if v.status != Status.OK} == {
        "not_null(trade_id)": Status.FAIL,
        "null_rate(venue)": Status.FAIL,
        "range(price)": Status.FAIL,
        "range(qty)": Status.FAIL,
        "in_set(side)": Status.FAIL,
        "regex(symbol)": Status.FAIL,
        "unique(trade_id)": Status.FAIL,
    }
    assert got["null_rate(venue)"].value == 1.0
    assert got["range(price)"].details["violations"] == 1
    assert got["unique(trade_id)"].details["violations"] == 1


def test_validity_tolerance_and_warn_severity() -> None:
    e = engine([{"validity": {"not_null": ["venue"], "max_fail_rate": 0.5, "severity": "warn"}}])
    assert by_check(e.evaluate(batch(trades())))["not_null(venue)"].status == Status.OK
    all_null = trades().with_columns(pl.lit(None, dtype=pl.String).alias("venue"))
    assert by_check(e.evaluate(batch(all_null)))["not_null(venue)"].status == Status.WARN


def test_sql_check() -> None:
    e = engine(
        [{"sql": {"name": "big", "query": "select count(*) as value from batch where qty > 1.5", "max": 10}}]
    )
    result = by_check(e.evaluate(batch(trades())))["big"]
    assert result.status == Status.FAIL and result.value > 10
    bad = engine([{"sql": {"query": "select nope from batch", "max": 1}}])
    assert by_check(bad.evaluate(batch(trades())))["sql"].status == Status.ERROR


def test_lag_check_reads_facts() -> None:
    from dqmon.facts import ConsumerLag, SourceFacts

    e = engine([{"lag": {"group": "app", "max_messages": 100, "max_seconds": "30s"}}])
    facts = SourceFacts(observed_at=NOW, consumer_lag={"app": ConsumerLag(50, 5.0)})
    assert e.sweep(NOW, facts)[0].status == Status.OK
    behind = SourceFacts(observed_at=NOW, consumer_lag={"app": ConsumerLag(500, 45.0)})
    (result,) = e.sweep(NOW, behind)
    assert result.status == Status.FAIL and "500 messages" in result.message and "45.0s" in result.message
    assert e.sweep(NOW, SourceFacts(observed_at=NOW))[0].status == Status.ERROR


def test_baselines_and_history_survive_restart(tmp_path: Path) -> None:
    checks = [
        {"schema": {"on_drift": "fail"}},
        {"volume": {"anomaly": {"min_history": 5}}},
        {"distribution": {"column": "price", "max": 0.2, "reference": "rolling_1h"}},
    ]
    clock = Clock()
    first = engine(checks, clock=clock, store=SqliteStateStore(tmp_path / "s.db"))
    for seed in range(6):
        clock.advance(5)
        first.evaluate(batch(trades(seed=seed), seen=1000))
    clock.advance(120)  # past the reference's persistence throttle
    first.evaluate(batch(trades(seed=7), seen=1000))
    restarted = engine(checks, clock=clock, store=SqliteStateStore(tmp_path / "s.db"))
    drifted = trades(seed=8, shift=20).drop("venue")
    got = by_check(restarted.evaluate(batch(drifted, seen=100)))
    assert got["schema:drift"].status == Status.FAIL and got["schema:drift"].details["removed"] == ["venue"]
    assert got["volume"].status == Status.FAIL and got["volume"].details["history"] >= 5
    assert got["distribution"].status == Status.FAIL


def test_volume_does_not_judge_partial_windows() -> None:
    from dataclasses import replace

    e = engine([{"volume": {"min": 500, "anomaly": {"min_history": 3}}}])
    partial = replace(batch(trades(10)), partial=True)
    assert "volume" not in by_check(e.evaluate(partial))  # neither fails nor resolves anything
    assert by_check(e.evaluate(batch(trades(10))))["volume"].status == Status.FAIL


def test_freshness_silence_counts_from_production_time_not_reading_time() -> None:
    clock = Clock()
    e = engine([{"freshness": {"max_lag": "1h", "max_silence": "10s"}}], clock=clock)
    e.evaluate(batch(trades(lag=1)))
    clock.advance(30)
    # after a restart the consumer re-reads records produced 30 s ago: still silent
    old = trades(lag=1).with_columns(pl.col("event_ts").alias("_timestamp"))
    e.evaluate(batch(old))
    (stale,) = e.sweep(clock())
    assert stale.status == Status.FAIL and stale.value == pytest.approx(30, abs=0.1)
    fresh = trades(lag=1, now=clock()).with_columns(pl.col("event_ts").alias("_timestamp"))
    e.evaluate(batch(fresh))
    assert e.sweep(clock()) == []


def test_a_rolling_reference_survives_a_restart_compactly_and_reads_the_older_list_form() -> None:
    from dqmon.checks.reference import RollingReference
    from dqmon.config.checks import Reference

    store = MemoryStateStore()
    spec = Reference.model_validate({"rolling": "5m"})
    prices = np.array([0.1, 2.5, 1e300, -3.0])
    first = RollingReference(spec, store, "ref", max_segments=8)
    first.add("BTC", prices, 100.0)
    first.add("ETH", np.array([3, 1, 2], dtype=np.int64), 100.0)
    first.add("side", np.array(["buy", "sell"], dtype=object), 100.0)
    first._persist(101.0)
    stored = json.dumps(store.get_state("ref"))
    assert "2.5" not in stored  # numbers are bytes, not decimal text
    again = RollingReference(spec, store, "ref", max_segments=8)
    assert again.sample("BTC", 120.0).tolist() == prices.tolist()
    assert again.sample("ETH", 120.0).dtype == np.int64 and again.sample("ETH", 120.0).tolist() == [3, 1, 2]
    assert again.sample("side", 120.0).tolist() == ["buy", "sell"]
    store.put_state("ref", {"BTC": [[100.0, [1.0, 2.0]]]})  # as persisted before the encoding
    assert RollingReference(spec, store, "ref", max_segments=8).sample("BTC", 120.0).tolist() == [1.0, 2.0]
