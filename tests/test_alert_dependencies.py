"""Dependencies between datasets: which firing alerts are consequences of which upstream alert (a
pure function, property-tested against a brute-force reference), and the AlertManager hook that
posts a consequence into the upstream alert's thread."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dqmon.alerts.dependencies import CAUSE_KINDS, SYMPTOM_KINDS, FiringAlert, consequences
from dqmon.alerts.manager import AlertManager
from dqmon.config.models import Pipeline
from dqmon.results import CheckResult, Status
from dqmon.state.store import MemoryStateStore

T0 = 1_800_000_000.0


def alert(fp: str, dataset: str, kind: str, at: float = 0.0, thread: str | None = "t") -> FiringAlert:
    return FiringAlert(fp, dataset, kind, kind, at, thread and f"{thread}-{fp}")


def test_a_view_fed_by_a_stale_topic_is_a_consequence_of_the_topics_alert() -> None:
    fed_by = {"features_mv": ["trades"], "online": ["features_mv"]}
    topic = alert("a", "trades", "freshness")
    view = alert("b", "features_mv", "freshness", 5)
    latency = alert("c", "features_mv", "latency", 6)
    online = alert("d", "online", "reconcile", 7)
    schema = alert("e", "features_mv", "schema", 8)  # not a symptom of staleness: its own page
    out = consequences([topic, view, latency, online, schema], fed_by)
    # the root is the most upstream cause, through the chain
    assert out == {"b": topic, "c": topic, "d": topic}
    # an unannounced upstream alert (no thread yet) causes nothing
    assert consequences([alert("a", "trades", "freshness", thread=None), view], fed_by) == {}
    # no fed_by, no consequences; a cycle terminates
    assert consequences([topic, view], {}) == {}
    assert consequences([topic, view], {"trades": ["features_mv"], "features_mv": ["trades"]}) == {
        "b": topic,
        "a": view,
    }


names = st.sampled_from(["t", "v", "w", "x"])


def _reference(firing: list[FiringAlert], fed_by: dict[str, list[str]]) -> dict[str, str]:
    """Brute force: walk every path upstream; the deepest announced cause, then earliest, then fp."""

    def depths(d: str) -> dict[str, int]:
        best: dict[str, int] = {}

        def walk(node: str, depth: int, path: tuple[str, ...]) -> None:
            for up in fed_by.get(node, []):
                if up in path or up == d:
                    continue
                best[up] = min(best.get(up, depth + 1), depth + 1)
                walk(up, depth + 1, (*path, up))

        walk(d, 0, (d,))
        return best

    out = {}
    for a in firing:
        if a.kind not in SYMPTOM_KINDS:
            continue
        ups = depths(str(a.dataset))
        causes = [
            c
            for c in firing
            if c.kind in CAUSE_KINDS and c.thread and c.dataset in ups and c.fingerprint != a.fingerprint
        ]
        if causes:
            out[a.fingerprint] = min(
                causes, key=lambda c: (-ups[str(c.dataset)], c.fired_at, c.fingerprint)
            ).fingerprint
    return out


@settings(max_examples=200, deadline=None)
@given(
    edges=st.lists(st.tuples(names, names), max_size=8),
    raw=st.lists(
        st.tuples(
            names,
            st.sampled_from(["freshness", "volume", "latency", "schema"]),
            st.integers(0, 5),
            st.booleans(),
        ),
        max_size=8,
    ),
)
def test_consequences_match_a_brute_force_reference(
    edges: list[tuple[str, str]], raw: list[tuple[str, str, int, bool]]
) -> None:
    fed_by: dict[str, list[str]] = {}
    for down, up in edges:
        fed_by.setdefault(down, []).append(up)
    firing = [
        FiringAlert(f"fp{i}", d, k, k, float(at), "thread" if announced else None)
        for i, (d, k, at, announced) in enumerate(raw)
    ]
    got = {fp: cause.fingerprint for fp, cause in consequences(firing, fed_by).items()}
    assert got == _reference(firing, fed_by)


# --------------------------------------------------------------------------- the manager hook


def _pipeline() -> Pipeline:
    return Pipeline.model_validate(
        {
            "pipeline": "p",
            "owner": "#team",
            "datasets": [
                {
                    "name": "trades",
                    "source": {"kind": "replay", "path": "x"},
                    "checks": [{"freshness": {"max_lag": "5s"}}],
                },
                {
                    "name": "features_mv",
                    "source": {"kind": "replay", "path": "y"},
                    "fed_by": ["trades"],
                    "checks": [{"freshness": {"max_lag": "5s"}}, {"validity": {"not_null": ["x"]}}],
                },
            ],
        }
    )


def _res(dataset: str, check: str, status: Status) -> CheckResult:
    return CheckResult(
        "p", dataset, check, check.split("(")[0], status, 9.0, "<= 5s", f"{check} is {status.label}"
    )


def test_manager_posts_downstream_symptoms_in_the_upstream_thread_and_says_so() -> None:
    m = AlertManager(_pipeline(), MemoryStateStore(), slack_configured=True)
    [topic] = m.observe([_res("trades", "freshness", Status.FAIL)], T0)
    assert "consequence_of" not in topic.payload
    [view] = m.observe([_res("features_mv", "freshness", Status.FAIL)], T0 + 1)
    assert view.thread_key == topic.thread_key and view.event == "firing"
    assert view.payload["consequence_of"] == "trades/freshness" and view.payload["grouped"] is True
    assert str(view.payload["message"]).startswith("consequence of trades/freshness (upstream)")
    # a failure that is not a staleness symptom pages on its own
    [nulls] = m.observe([_res("features_mv", "validity(x)", Status.FAIL)], T0 + 2)
    assert nulls.thread_key != topic.thread_key and "consequence_of" not in nulls.payload
    # the upstream resolves first (alerts resolve after passing for `clear`, two 10-s windows);
    # the consequence's resolve still follows it into that thread
    m.observe([_res("trades", "freshness", Status.OK)], T0 + 3)
    [upstream_resolved] = m.observe([_res("trades", "freshness", Status.OK)], T0 + 30)
    assert upstream_resolved.event == "resolved"
    m.observe([_res("features_mv", "freshness", Status.OK)], T0 + 31)
    [view_resolved] = m.observe([_res("features_mv", "freshness", Status.OK)], T0 + 60)
    assert view_resolved.event == "resolved" and view_resolved.thread_key == topic.thread_key
    # the next time the view alone is stale, it is a page of its own again
    [alone] = m.observe([_res("features_mv", "freshness", Status.FAIL)], T0 + 100)
    assert alone.thread_key != topic.thread_key and "consequence_of" not in alone.payload
