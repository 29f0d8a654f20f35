"""The alert state machine on a controlled clock, with hypothesis-generated observation sequences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dqmon.alerts.rules import AlertState, RuleTiming, advance

timings = st.builds(
    RuleTiming,
    for_seconds=st.sampled_from([0.0, 10.0, 60.0]),
    repeat_seconds=st.sampled_from([30.0, 300.0, 3600.0]),
    send_resolved=st.booleans(),
    flap_window_seconds=st.sampled_from([60.0, 600.0]),
    flap_max_transitions=st.integers(2, 6),
)
# (seconds since the previous observation, failing, silenced)
observations = st.lists(st.tuples(st.integers(1, 120), st.booleans(), st.booleans()), min_size=1, max_size=80)


@settings(max_examples=300, deadline=None)
@given(timing=timings, obs=observations)
def test_no_notification_without_a_state_change_or_repeat_interval(timing: RuleTiming, obs) -> None:
    state, now, told = AlertState("fp"), 1000.0, "none"
    for gap, failing, silenced in obs:
        now += gap
        before = state
        step = advance(state, failing, now, timing, silenced)
        state = step.state
        if step.event == "firing":
            assert state.phase == "firing"
            assert before.notified == "none"
            assert not silenced
            assert not state.flapping
            assert told == "none"  # never two announcements of one episode
            told = "firing"
        elif step.event == "repeat":
            # (the phase may have left firing during a silence: the humans' view is still "firing")
            assert state.phase == "firing"
            assert before.notified == "firing"
            assert before.last_notified_at is not None
            assert now - before.last_notified_at >= timing.repeat_seconds
        elif step.event == "resolved":
            assert timing.send_resolved
            assert state.phase != "firing"
            assert before.notified == "firing"
            assert step.episode == before.episode  # the resolve closes the announced thread
            told = "none"
        else:
            # nothing said: the humans' view did not change
            assert state.notified == before.notified or not timing.send_resolved
        if state.notified == "none" and before.notified == "firing" and step.event is None:
            assert not timing.send_resolved
            told = "none"


@settings(max_examples=300, deadline=None)
@given(timing=timings, obs=observations)
def test_every_firing_alert_eventually_resolves_once_checks_pass(timing: RuleTiming, obs) -> None:
    state, now = AlertState("fp"), 1000.0
    for gap, failing, silenced in obs:
        now += gap
        state = advance(state, failing, now, timing, silenced).state
    announced = state.notified == "firing"
    events = []
    # checks pass, unsilenced, for longer than the flap window: the alert must settle
    for _ in range(int(timing.flap_window_seconds // 10) + 3):
        now += 10
        step = advance(state, False, now, timing, False)
        state = step.state
        if step.event:
            events.append(step.event)
    assert state.phase in ("ok", "resolved")
    assert state.notified == "none"
    assert not state.flapping
    assert events == (["resolved"] if announced and timing.send_resolved else [])


def test_for_delays_firing_and_short_failures_stay_quiet() -> None:
    t = RuleTiming(for_seconds=60, repeat_seconds=3600)
    s = AlertState("fp")
    s1 = advance(s, True, 0, t)
    assert s1.state.phase == "pending"
    assert s1.event is None
    s2 = advance(s1.state, False, 30, t)  # recovered before `for`: nobody is told
    assert s2.state.phase == "ok"
    assert s2.event is None
    s3 = advance(s2.state, True, 40, t)
    s4 = advance(s3.state, True, 99, t)
    assert s4.state.phase == "pending"
    assert s4.event is None
    s5 = advance(s4.state, True, 100, t)
    assert s5.state.phase == "firing"
    assert s5.event == "firing"
    assert s5.state.failing_since == 40


def test_repeat_interval_and_resolve() -> None:
    t = RuleTiming(repeat_seconds=100)
    s = advance(AlertState("fp"), True, 0, t)
    assert s.event == "firing"
    events = []
    for now in range(10, 260, 10):
        s = advance(s.state, True, now, t)
        events.append((now, s.event))
    assert [n for n, e in events if e == "repeat"] == [100, 200]
    end = advance(s.state, False, 300, t)
    assert end.event == "resolved"
    assert end.episode == s.state.episode


def test_flapping_pauses_notifications_then_reconciles() -> None:
    t = RuleTiming(flap_window_seconds=100, flap_max_transitions=3)
    s = AlertState("fp")
    events = []
    for now, failing in [(0, True), (10, False), (20, True), (30, False), (40, True), (50, False)]:
        step = advance(s, failing, now, t)
        s = step.state
        events.append(step.event)
    # fire, resolve, then the third transition makes it flap: silence from there
    assert events == ["firing", "resolved", None, None, None, None]
    assert s.flapping
    step = advance(s, False, 200, t)  # calm for the whole window
    assert not step.state.flapping
    assert step.event is None


def test_silence_pauses_then_announces_once() -> None:
    t = RuleTiming()
    s = advance(AlertState("fp"), True, 0, t, silenced=True)
    assert s.state.phase == "firing"
    assert s.event is None
    s = advance(s.state, True, 10, t, silenced=True)
    assert s.event is None
    s = advance(s.state, True, 20, t, silenced=False)
    assert s.event == "firing"
