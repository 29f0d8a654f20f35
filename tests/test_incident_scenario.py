"""The incident scenario (bench/incidents.py): its scorer on scripted Slack messages, and the short
version live on the embedded broker with the real runtime, scored from the Slack API double."""

from __future__ import annotations

import pytest

from bench.incident_score import Injected, Message, parse_text, score
from bench.incidents import FOR_SECONDS, WINDOW_SECONDS, run_scenario, short_script


def msg(at: float, ts: str, event: str, check: str, thread: str | None = None) -> Message:
    return Message(at, ts, thread, event, check)


def test_scorer_counts_detections_duplicates_resolves_and_false_alarms() -> None:
    injected = [
        Injected("stall", ("d/volume",), 100, 140),
        Injected("retype", ("d/schema",), 200, 240),
        Injected("missed", ("d/validity",), 300, 340),
    ]
    sent = [
        msg(50, "1", "FIRING", "d/volume"),  # in the clean run
        msg(55, "1b", "RESOLVED", "d/volume", "1"),
        msg(112, "2", "FIRING", "d/volume"),
        msg(115, "3", "FIRING", "d/freshness", "2"),  # collateral in the incident's thread
        msg(150, "4", "RESOLVED", "d/volume", "2"),
        msg(152, "5", "RESOLVED", "d/freshness", "2"),
        msg(213, "6", "FIRING", "d/schema"),
        msg(220, "7", "FIRING", "d/schema"),  # announced twice: a duplicate, in a second thread
        msg(250, "8", "RESOLVED", "d/schema", "6"),
    ]
    result = score(injected, sent, {"1", "2", "6"}, clean=(0, 90), grace=20)
    stall, retype, missed = result.incidents
    assert (stall.detected, stall.delay, stall.duplicates, stall.resolved_in_thread) == (True, 12, 0, True)
    assert stall.checks == ["d/volume", "d/freshness"]
    assert (retype.detected, retype.duplicates, retype.resolved_in_thread) == (True, 2, False)
    assert not missed.detected and missed.delay is None
    assert result.false_alarms == ["d/volume (clean run)"]
    assert result.recall == pytest.approx(2 / 3)
    assert not result.meets(17)
    text = "[FIRING] [page] scenario/trades/schema: 2 parts failing: a: b"
    assert parse_text(text) == ("FIRING", "trades/schema")


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_short_incident_scenario_meets_the_targets() -> None:
    """A retype that reverts, then two volume drops 30 s apart: each announced once, on time,
    resolved in its thread; nothing on the clean run."""
    run = run_scenario(short_script(), clean_seconds=15, log=lambda _: None)
    summary = run.score.summary()
    rows = [s.row() for s in run.score.incidents]
    assert run.score.recall == 1.0, rows
    assert run.score.duplicates == 0, rows
    assert run.score.false_alarms == [], run.score.false_alarms
    assert run.score.all_resolved, rows
    assert summary["median_delay_s"] <= WINDOW_SECONDS + FOR_SECONDS + 2, rows
