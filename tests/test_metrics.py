"""DqmonMetrics on a fresh registry: values, bounded labels, scrape-time gauges, promtool lint."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dqmon.batch import MicroBatch
from dqmon.decoders.avro import AvroDecoder
from dqmon.decoders.json import JsonDecoder
from dqmon.decoders.json_schema import JsonSchemaDecoder
from dqmon.decoders.protobuf import ProtobufDecoder
from dqmon.facts import ConsumerLag, SourceFacts
from dqmon.results import CheckResult, Status
from dqmon.telemetry.metrics import DqmonMetrics, decode_error_reasons, decode_reason_label

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def make_batch(**overrides) -> MicroBatch:
    fields = {
        "pipeline": "trades-features",
        "dataset": "trades",
        "df": pl.DataFrame({"price": [1.0, 2.0, 3.0]}),
        "window_start": NOW,
        "window_end": NOW + timedelta(seconds=5),
        "rows_seen": 30,
        "rows_sampled": 4,
        "decode_errors": {"invalid_json": 1},
    }
    fields.update(overrides)
    return MicroBatch(**fields)


def result(check: str, status: Status, value: float | None, **kw) -> CheckResult:
    return CheckResult(
        pipeline="trades-features",
        dataset="trades",
        check=check,
        kind=kw.pop("kind", "validity"),
        status=status,
        value=value,
        threshold="<= 0.01",
        message="m",
        evaluated_at=kw.pop("evaluated_at", NOW),
        **kw,
    )


@pytest.fixture
def metrics() -> DqmonMetrics:
    return DqmonMetrics(CollectorRegistry())


def sample(m: DqmonMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


DS = {"pipeline": "trades-features", "dataset": "trades"}


def test_observe_batch_counts_rows_errors_and_stage_durations(metrics: DqmonMetrics) -> None:
    metrics.observe_batch(make_batch(), {"fetch": 0.2, "decode": 0.003, "check": 0.04})
    metrics.observe_batch(make_batch(rows_seen=10, rows_sampled=1, decode_errors={}), {"fetch": 0.1})
    assert sample(metrics, "dqmon_rows_seen_total", **DS) == 40
    assert sample(metrics, "dqmon_rows_sampled_total", **DS) == 5
    assert sample(metrics, "dqmon_batches_total", **DS) == 2
    assert sample(metrics, "dqmon_decode_errors_total", **DS, reason="invalid_json") == 1
    assert sample(metrics, "dqmon_batch_duration_seconds_count", **DS, stage="fetch") == 2
    assert sample(metrics, "dqmon_batch_duration_seconds_sum", **DS, stage="fetch") == pytest.approx(0.3)
    assert sample(metrics, "dqmon_batch_duration_seconds_bucket", **DS, stage="decode", le="0.005") == 1


def test_unknown_decode_reason_and_stage_are_bounded(metrics: DqmonMetrics) -> None:
    # a decoder that puts record content into its reason must not create a series per record
    batch = make_batch(decode_errors={"Expecting value: line 1 column 5 {'secret': 1}": 3, "other": 2})
    metrics.observe_batch(batch, {"some stage from a plugin": 0.5})
    assert sample(metrics, "dqmon_decode_errors_total", **DS, reason="other") == 5
    reasons = {
        s.labels["reason"] for m in metrics.registry.collect() for s in m.samples if "reason" in s.labels
    }
    assert reasons == {"other"}
    assert sample(metrics, "dqmon_batch_duration_seconds_count", **DS, stage="other") == 1
    assert decode_reason_label("invalid_json") == "invalid_json"
    assert decode_reason_label("ValueError: 'x'") == "other"


def test_every_decoder_reason_is_a_label_value() -> None:
    for decoder in (JsonDecoder, AvroDecoder, ProtobufDecoder, JsonSchemaDecoder):
        assert set(decoder.reasons) <= set(decode_error_reasons()), decoder.__name__


def test_declare_dataset_creates_zero_series_for_every_reason(metrics: DqmonMetrics) -> None:
    metrics.declare_dataset("p", "d")
    for reason in decode_error_reasons():
        assert sample(metrics, "dqmon_decode_errors_total", pipeline="p", dataset="d", reason=reason) == 0
    count = sample(metrics, "dqmon_batch_duration_seconds_count", pipeline="p", dataset="d", stage="check")
    assert count == 0


def test_results_become_status_value_and_evaluation_counters(metrics: DqmonMetrics) -> None:
    labels = {**DS, "check": "null_rate", "kind": "validity"}
    metrics.record_results([result("null_rate", Status.OK, 0.001)])
    metrics.record_results([result("null_rate", Status.FAIL, 0.2), result("count", Status.ERROR, None)])
    assert sample(metrics, "dqmon_check_status", **labels) == 2
    assert sample(metrics, "dqmon_check_value", **labels) == pytest.approx(0.2)
    assert sample(metrics, "dqmon_check_last_evaluation_timestamp_seconds", **labels) == NOW.timestamp()
    assert sample(metrics, "dqmon_check_evaluations_total", **labels, status="ok") == 1
    assert sample(metrics, "dqmon_check_evaluations_total", **labels, status="fail") == 1
    err = {**DS, "check": "count", "kind": "validity"}
    assert sample(metrics, "dqmon_check_status", **err) == 3
    # an error has no value: no sample rather than a misleading 0
    assert sample(metrics, "dqmon_check_value", **err) is None


def test_numeric_bounds_in_details_are_exported(metrics: DqmonMetrics) -> None:
    details = {"lower_bound": 800, "upper_bound": 1200.5, "note": "text is ignored"}
    metrics.record_results([result("volume", Status.OK, 1000.0, kind="volume", details=details)])
    labels = {**DS, "check": "volume", "kind": "volume"}
    assert sample(metrics, "dqmon_check_lower_bound", **labels) == 800
    assert sample(metrics, "dqmon_check_upper_bound", **labels) == 1200.5
    # the volume check's anomaly band
    band = {"band": [10.0, 20.0]}
    metrics.record_results([result("volume", Status.WARN, 5.0, kind="volume", details=band)])
    assert sample(metrics, "dqmon_check_lower_bound", **labels) == 10
    assert sample(metrics, "dqmon_check_upper_bound", **labels) == 20


def test_check_series_per_dataset_are_capped(metrics: DqmonMetrics) -> None:
    capped = DqmonMetrics(CollectorRegistry(), max_check_series_per_dataset=3)
    # a segmented check that (wrongly) names results after data values
    capped.record_results([result(f"psi[{sym}]", Status.OK, 0.1) for sym in range(10)])
    capped.record_results([result("psi[0]", Status.WARN, 0.3), result("psi[99]", Status.OK, 0.0)])
    series = [s for m in capped.registry.collect() if m.name == "dqmon_check_status" for s in m.samples]
    assert len(series) == 3
    assert sample(capped, "dqmon_check_series_dropped_total", **DS) == 8
    assert sample(capped, "dqmon_check_status", **DS, check="psi[0]", kind="validity") == 1


def test_freshness_lag_is_computed_at_scrape_time(metrics: DqmonMetrics) -> None:
    newest = datetime.now(UTC) - timedelta(seconds=30)
    facts = SourceFacts(observed_at=NOW, newest_record_time=newest)
    metrics.observe_facts("trades-features", "trades", facts)
    first = sample(metrics, "dqmon_freshness_lag_seconds", **DS)
    assert first is not None
    assert 29 < first < 35
    time.sleep(0.3)
    later = sample(metrics, "dqmon_freshness_lag_seconds", **DS)
    assert later is not None
    assert later >= first + 0.25  # keeps growing while the source is silent


def test_source_up_and_consumer_lag_follow_facts(metrics: DqmonMetrics) -> None:
    lag = {"features-writer": ConsumerLag(messages=120, seconds=4.5), "audit": ConsumerLag(messages=3)}
    metrics.observe_facts("trades-features", "trades", SourceFacts(observed_at=NOW, consumer_lag=lag))
    assert sample(metrics, "dqmon_source_up", **DS) == 1
    assert sample(metrics, "dqmon_consumer_lag_messages", **DS, group="features-writer") == 120
    assert sample(metrics, "dqmon_consumer_lag_seconds", **DS, group="features-writer") == 4.5
    assert sample(metrics, "dqmon_consumer_lag_seconds", **DS, group="audit") is None
    # the broker went away and a group was removed from the config
    facts = SourceFacts(observed_at=NOW, up=False, consumer_lag={"audit": ConsumerLag(messages=5)})
    metrics.observe_facts("trades-features", "trades", facts)
    assert sample(metrics, "dqmon_source_up", **DS) == 0
    assert sample(metrics, "dqmon_consumer_lag_messages", **DS, group="features-writer") is None
    assert sample(metrics, "dqmon_consumer_lag_messages", **DS, group="audit") == 5


def test_alerts_slo_notifier_state_and_queue_setters(metrics: DqmonMetrics) -> None:
    metrics.set_alerts_firing("trades-features", "page", 2)
    metrics.set_slo("trades-features", "features-fresh", 0.75, {"1h": 14.0, "5m": 20.5})
    metrics.declare_notifier("slack")
    metrics.count_notification("slack", "failed")
    metrics.count_notification("slack", "exploded")
    metrics.count_state_store_error("write")
    metrics.set_queue_depth("trades-features", "trades", 3)
    metrics.count_dropped_batch("trades-features", "trades")
    assert sample(metrics, "dqmon_alerts_firing", pipeline="trades-features", severity="page") == 2
    slo = {"pipeline": "trades-features", "slo": "features-fresh"}
    assert sample(metrics, "dqmon_slo_error_budget_remaining_ratio", **slo) == 0.75
    assert sample(metrics, "dqmon_slo_burn_rate", **slo, window="5m") == 20.5
    assert sample(metrics, "dqmon_notifications_total", notifier="slack", outcome="failed") == 1
    assert sample(metrics, "dqmon_notifications_total", notifier="slack", outcome="other") == 1
    assert sample(metrics, "dqmon_notifications_total", notifier="slack", outcome="delivered") == 0
    assert sample(metrics, "dqmon_state_store_errors_total", operation="write") == 1
    assert sample(metrics, "dqmon_queue_depth_batches", **DS) == 3
    assert sample(metrics, "dqmon_dropped_batches_total", **DS) == 1


def test_forget_dataset_removes_its_check_series(metrics: DqmonMetrics) -> None:
    metrics.record_results([result("null_rate", Status.OK, 0.0)])
    metrics.forget_dataset("trades-features", "trades")
    assert sample(metrics, "dqmon_check_status", **DS, check="null_rate", kind="validity") is None


def test_promtool_finds_no_problems_in_the_exposition(metrics: DqmonMetrics) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make system-deps` / .ci/run"
    metrics.declare_dataset("trades-features", "trades")
    metrics.declare_notifier("slack")
    metrics.observe_batch(make_batch(), {"fetch": 0.2, "decode": 0.003, "check": 0.04})
    metrics.record_results([result("null_rate", Status.WARN, 0.02, details={"lower_bound": 0})])
    metrics.observe_facts(
        "trades-features",
        "trades",
        SourceFacts(observed_at=NOW, newest_record_time=NOW, consumer_lag={"g": ConsumerLag(1, 2.0)}),
    )
    metrics.set_alerts_firing("trades-features", "warn", 1)
    metrics.set_slo("trades-features", "features-fresh", 0.5, {"1h": 2.0})
    exposition = generate_latest(metrics.registry)
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    report = proc.stdout.strip() + proc.stderr.strip()
    assert report == b"", report.decode()
