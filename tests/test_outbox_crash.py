"""kill -9 with undelivered notifications in the outbox, restart: each is delivered exactly once,
and alerts that were already announced are not announced again.

The monitor runs in a child process (this file, run as a script) that reads commands on stdin:
`observe <epoch> <check>=<ok|fail> ...` feeds the AlertManager and prints how many notifications
were enqueued; a DeliveryWorker sends them to the Slack API test double.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dqmon.config.models import Pipeline
from tests.test_notifier_slack import wait_for

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ["c1", "c2", "c3", "c4"]


def _pipeline() -> Pipeline:

    return Pipeline.model_validate(
        {
            "pipeline": "orders",
            "owner": "#orders-alerts",
            "alerts": {"repeat_interval": "1h", "flap": {"clear": "0s"}},  # resolve at once
            "datasets": [
                {
                    "name": "orders",
                    "source": {"kind": "replay", "path": "x.ndjson"},
                    "checks": [{"volume": {"min": 1, "name": c}} for c in CHECKS],
                }
            ],
        }
    )


def _child(db: str, api_url: str) -> None:
    from dqmon.alerts.delivery import DeliveryWorker, RetryPolicy
    from dqmon.alerts.manager import AlertManager
    from dqmon.alerts.notifiers.slack import SlackBotNotifier
    from dqmon.results import CheckResult, Status
    from dqmon.state.store import SqliteStateStore
    from tests.fixtures.slack_api import TOKEN

    store = SqliteStateStore(Path(db))
    manager = AlertManager(_pipeline(), store, slack_configured=True)
    worker = DeliveryWorker(
        store,
        {"slack": SlackBotNotifier(TOKEN, base_url=api_url)},
        concurrency=2,
        poll_interval=0.05,
        retry=RetryPolicy(max_attempts=10_000, base_seconds=0.05, max_seconds=0.2),
    )
    worker.start()
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, at, *pairs = line.split()
        assert cmd == "observe"
        results = [
            CheckResult(
                "orders", "orders", name, "volume", Status.FAIL if v == "fail" else Status.OK, 0.0, ">= 1", ""
            )
            for name, v in (p.split("=") for p in pairs)
        ]
        enqueued = manager.observe(results, float(at))
        worker.wake()
        print(f"enqueued {len(enqueued)}", flush=True)


class Child:
    def __init__(self, db: Path, api_url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(db), api_url],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.readline() == "ready"

    def readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def observe(self, at: float, **states: str) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"observe {at} " + " ".join(f"{k}={v}" for k, v in states.items()) + "\n")
        self.proc.stdin.flush()
        return int(self.readline().split()[1])

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def pending(db: Path) -> int:
    from dqmon.state.store import SqliteStateStore

    store = SqliteStateStore(db)
    try:
        return store.outbox_counts().get("pending", 0)
    finally:
        store.close()


@pytest.mark.slow
def test_kill_9_then_restart_delivers_each_notification_exactly_once(slack_api, tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    t0 = 1_800_000_000.0
    child = Child(db, slack_api.api_url)
    try:
        assert child.observe(t0, c1="fail", c2="fail", c3="fail", c4="ok") == 3
        wait_for(lambda: len(slack_api.top_level()) == 3, timeout=20)
        wait_for(lambda: pending(db) == 0, timeout=20)
        # Slack goes down; c1 recovers (a resolve to send) and c4 starts failing (a new alert)
        slack_api.fail_next(100_000, 500)
        assert child.observe(t0 + 60, c1="ok", c2="fail", c3="fail", c4="fail") == 2
        wait_for(lambda: len(slack_api.rejected) >= 4, timeout=20)  # both are being retried
        assert pending(db) == 2
        child.kill9()
    finally:
        child.stop()

    with slack_api.lock:
        slack_api.faults.clear()
    restarted = Child(db, slack_api.api_url)
    try:
        # the same checks say the same thing: nothing is re-announced as new
        assert restarted.observe(t0 + 120, c1="ok", c2="fail", c3="fail", c4="fail") == 0
        wait_for(lambda: pending(db) == 0, timeout=20)
        time.sleep(0.5)  # give a duplicate the chance to show up
    finally:
        restarted.stop()

    parents = slack_api.top_level()
    titles = sorted(p.body["blocks"][0]["text"]["text"].rsplit(" / ", 1)[-1] for p in parents)
    assert titles == ["c1", "c2", "c3", "c4"]  # each alert announced exactly once
    c1_ts = next(ts for ts, m in slack_api.messages.items() if not m.get("thread_ts") and "/c1:" in m["text"])
    replies = [c for c in slack_api.posts() if c.body.get("thread_ts")]
    assert [(r.body["thread_ts"], r.body["text"].split("]")[0]) for r in replies] == [(c1_ts, "[RESOLVED")]
    assert [u.body["ts"] for u in slack_api.updates()] == [c1_ts]


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
