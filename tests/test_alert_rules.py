"""The alert state machine on a controlled clock, with hypothesis-generated observation sequences
checked against a plain, whole-history reference of `for:` and `clear` (hysteresis)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from dqmon.alerts.rules import AlertState, RuleTiming, advance

timings = st.builds(
    RuleTiming,
    for_seconds=st.sampled_from([0.0, 3.0, 5.0, 10.0, 60.0]),
    repeat_seconds=st.sampled_from([30.0, 300.0, 3600.0]),
    send_resolved=st.booleans(),
    clear_seconds=st.sampled_from([0.0, 5.0, 10.0, 30.0]),
    tolerance_seconds=st.sampled_from([0.0, 0.25]),
)
# (seconds since the previous observation, failing, silenced)
observations = st.lists(st.tuples(st.integers(1, 120), st.booleans(), st.booleans()), min_size=1, max_size=80)
# evaluations of a 5-s window: mostly on time, sometimes a little early or late, or after a gap
window_gaps = st.sampled_from([5.0, 5.0, 5.0, 4.9, 5.1, 10.0, 15.0])


def reference_firing(obs: list[tuple[float, bool]], timing: RuleTiming) -> list[bool]:
    """Whole-history definition: firing at i iff some failing evaluation k <= i closes a run of
    consecutive failing evaluations lasting at least `for` (from the run's first evaluation), and
    no stretch of consecutive passing evaluations after k (up to i) lasted `clear`."""
    tol = timing.tolerance_seconds
    out = []
    for i in range(len(obs)):
        firing = False
        for k in range(i + 1):
            if not obs[k][1]:
                continue
            j = k
            while j > 0 and obs[j - 1][1]:
                j -= 1
            if obs[k][0] - obs[j][0] + tol < timing.for_seconds:
                continue
            cleared, stretch = False, None
            for m in range(k + 1, i + 1):
                if obs[m][1]:
                    stretch = None
                    continue
                stretch = obs[m][0] if stretch is None else stretch
                if obs[m][0] - stretch + tol >= timing.clear_seconds:
                    cleared = True
                    break
            if not cleared:
                firing = True
                break
        out.append(firing)
    return out


@settings(max_examples=300, deadline=None)
@given(timing=timings, gaps=st.lists(st.tuples(window_gaps, st.booleans()), min_size=1, max_size=60))
def test_for_and_clear_match_the_reference(timing: RuleTiming, gaps) -> None:
    now, obs, state = 1000.0, [], AlertState("fp")
    announcements, resolves, phases = 0, 0, []
    for gap, failing in gaps:
        now += gap
        obs.append((now, failing))
        step = advance(state, failing, now, timing)
        state = step.state
        phases.append(state.phase == "firing")
        announcements += step.event == "firing"
        resolves += step.event == "resolved"
    want = reference_firing(obs, timing)
    assert phases == want
    episodes = sum(1 for i, f in enumerate(want) if f and (i == 0 or not want[i - 1]))
    assert announcements == episodes  # every episode announced once, unsilenced
    ended = sum(1 for i, f in enumerate(want) if not f and i > 0 and want[i - 1])
    assert resolves == (ended if timing.send_resolved else 0)


@settings(max_examples=300, deadline=None)
@given(timing=timings, obs=observations)
def test_no_notification_without_a_state_change_or_repeat_interval(timing: RuleTiming, obs) -> None:
    state, now, told = AlertState("fp"), 1000.0, "none"
    for gap, failing, silenced in obs:
        now += gap
        before = state
        step = advance(state, failing, now, timing, silenced, ("a",) if failing else ())
        state = step.state
        if step.event == "firing":
            assert state.phase == "firing"
            assert before.notified == "none"
            assert not silenced
            assert told == "none"  # never two announcements of one episode
            told = "firing"
        elif step.event == "repeat":
            assert state.phase == "firing"
            assert before.notified == "firing"
            assert before.last_notified_at is not None
            assert now - before.last_notified_at >= timing.repeat_seconds
        elif step.event == "update":
            assert before.notified == "firing" and failing and before.parts != state.parts
        elif step.event == "resolved":
            assert timing.send_resolved
            assert state.phase != "firing"
            assert before.notified == "firing"
            assert step.episode == before.episode  # the resolve closes the announced thread
            told = "none"
        else:
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
    for _ in range(int(timing.clear_seconds // 5) + 2):  # checks pass, unsilenced, for `clear`
        now += 5
        step = advance(state, False, now, timing, False)
        state = step.state
        if step.event:
            events.append(step.event)
    assert state.phase in ("ok", "resolved")
    assert state.notified == "none"
    assert events == (["resolved"] if announced and timing.send_resolved else [])


@settings(max_examples=200, deadline=None)
@given(pattern=st.lists(st.booleans(), min_size=2, max_size=200), for_=st.sampled_from([0.0, 5.0, 10.0]))
def test_a_check_alternating_faster_than_clear_is_one_announcement_per_repeat_interval(pattern, for_) -> None:
    """Healthy stretches shorter than `clear` (two 5-s windows) never end the episode."""
    timing = RuleTiming(for_seconds=for_, repeat_seconds=300, clear_seconds=10, tolerance_seconds=0.25)
    state, now, sent = AlertState("fp"), 0.0, []
    passing_run = 0
    for failing in [True, *pattern]:
        passing_run = 0 if failing else passing_run + 1
        if passing_run >= 2:  # keep every healthy stretch below `clear`
            failing, passing_run = True, 0
        now += 5
        step = advance(state, failing, now, timing)
        state = step.state
        if step.event in ("firing", "repeat"):
            sent.append(now)
    assert len(sent) <= 1 + now // 300
    assert all(b - a >= 300 for a, b in itertools.pairwise(sent))


def test_incidents_minutes_apart_are_each_announced() -> None:
    """Issue 10 #2: a one-partition stall, a full stall 100 s later, then a volume drop three
    minutes after that were 4+ transitions in 10 minutes, and the drop was swallowed as flapping.
    Each follows minutes of healthy evaluations: each is announced, and each resolves."""
    timing = RuleTiming(for_seconds=10, clear_seconds=10, tolerance_seconds=0.25)
    state, events, now = AlertState("fp"), [], 0.0
    script = [(8, True), (20, False), (8, True), (36, False), (8, True), (20, False)]  # 5-s windows
    for count, failing in script:
        for _ in range(count):
            now += 5
            step = advance(state, failing, now, timing)
            state = step.state
            if step.event:
                events.append(step.event)
    assert events == ["firing", "resolved"] * 3


def test_for_shorter_equal_and_longer_than_the_window() -> None:
    """`for: D` on 5-s windows: D=0 fires at the first failing evaluation, 0 < D <= 5 s at the
    second, 5 < D <= 10 s at the third (Alertmanager: failing in every evaluation for >= D)."""
    for d, nth in [(0.0, 1), (3.0, 2), (5.0, 2), (7.0, 3), (10.0, 3), (30.0, 7)]:
        timing = RuleTiming(for_seconds=d, tolerance_seconds=0.25)
        state, fired_at = AlertState("fp"), None
        for i in range(1, 10):
            # the evaluation comes 0.1 s early: the tolerance still counts it a whole window later
            step = advance(state, True, 1000.0 + 5 * i - (0.1 if i > 1 else 0), timing)
            state = step.state
            if step.event == "firing" and fired_at is None:
                fired_at = i
        assert fired_at == nth, (d, fired_at)


def test_parts_changing_while_announced_update_the_message() -> None:
    t = RuleTiming(clear_seconds=10)
    s = advance(AlertState("fp"), True, 0, t, parts=("schema",))
    assert s.event == "firing" and s.state.parts == ("schema",)
    s = advance(s.state, True, 5, t, parts=("schema",))
    assert s.event is None
    s = advance(s.state, True, 10, t, parts=("schema", "schema:drift"))
    assert s.event == "update" and s.state.parts == ("schema", "schema:drift")
    s = advance(s.state, False, 15, t)  # passing, not yet cleared: no update to "nothing failing"
    assert s.event is None and s.state.phase == "firing"
    s = advance(s.state, True, 20, t, parts=("schema:drift",))
    assert s.event == "update"
    s = advance(s.state, False, 25, t)
    s = advance(s.state, False, 35, t)
    assert s.event == "resolved"


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


def test_silence_pauses_then_announces_once() -> None:
    t = RuleTiming()
    s = advance(AlertState("fp"), True, 0, t, silenced=True)
    assert s.state.phase == "firing"
    assert s.event is None
    s = advance(s.state, True, 10, t, silenced=True)
    assert s.event is None
    s = advance(s.state, True, 20, t, silenced=False)
    assert s.event == "firing"


def test_states_of_older_versions_load() -> None:
    old = {"phase": "firing", "notified": "firing", "transitions": [1.0, 2.0], "flapping": True}
    state = AlertState.from_json("fp", old)
    assert state.phase == "firing" and state.parts == ()
    assert AlertState.from_json("fp", state.to_json()) == state
