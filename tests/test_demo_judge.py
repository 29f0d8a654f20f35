"""The demo's judge: which alert detects which incident, and what counts as a false alert."""

from __future__ import annotations

from dqmon.demo.scenario import Judge, incidents
from dqmon.demo.stream import StreamKnobs


def test_judge_attributes_detection_and_resolution() -> None:
    stall, drop, *_ = incidents(20)
    judge = Judge(grace=10)
    judge.clean_from = 0
    judge.alert("firing", "trades", "volume", 5)  # on the clean stretch: a false alert
    first = judge.start(stall, 30)
    judge.alert("firing", "trades", "sql", 35)  # related noise, not a detection
    judge.alert("firing", "trades", "freshness", 42)
    first.ended = 50
    judge.alert("resolved", "trades", "freshness", 70)  # after the grace window: still counted
    second = judge.start(drop, 90)
    judge.alert("firing", "orderbook", "volume", 95)  # right check, wrong dataset
    assert judge.false_alerts == ["trades/volume"]
    assert (first.detected_by, first.delay, first.resolved_at) == ("freshness", 12, 70)
    assert first.alerts == {"trades/sql", "trades/freshness"}
    assert second.detected_at is None
    assert not judge.all_detected


def test_incidents_turn_the_knobs() -> None:
    knobs = StreamKnobs()
    for incident in incidents(10):
        incident.inject(knobs)
    assert knobs.stalled and knobs.schema_change and knobs.volume_factor < 0.1
    assert knobs.shifted_symbol == "ETH-USDT" and knobs.null_share > 0
