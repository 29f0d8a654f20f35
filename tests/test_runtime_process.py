"""`dqmon run` as a process: SIGHUP and checks-file changes reload the checks; an invalid change
is logged and the running checks stay; start-up code pages are handed back once and checking goes
on. A replay dataset keeps the test free of a broker."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from dqmon.demo.broker import free_port
from tests.e2e_helpers import DqmonProcess, wait_until, write_replay_checks, write_trades


def _status(proc: DqmonProcess, check: str) -> float | None:
    return proc.metric("dqmon_check_status", dataset="trades", check=check)


def _logged(proc: DqmonProcess, text: str) -> bool:
    return any(text in str(r.get("msg", "")) for r in proc.log_records())


def test_sighup_and_file_changes_reload_checks_and_bad_checks_are_rejected(tmp_path: Path) -> None:
    checks = tmp_path / "checks"
    write_replay_checks(checks, window="300ms")
    write_trades(checks / "trades.ndjson", null_every=10)
    env = {
        "DQMON_DATA_DIR": str(tmp_path / "data"),
        "DQMON_LOG_FORMAT": "json",
        "DQMON_HTTP_HOST": "127.0.0.1",
        "DQMON_TRIM_STARTUP_PAGES_AFTER": "2",
    }
    proc = DqmonProcess(checks, env, tmp_path / "dqmon.log", free_port()).start()
    try:
        proc.wait_ready(30)
        wait_until(lambda: _status(proc, "volume") is not None, 15, "the volume check on /metrics")
        assert _status(proc, "not_null(price)") is None

        # SIGHUP: the file changes but keeps its mtime, so only the signal can trigger the reload
        path = checks / "replay.yaml"
        stat = path.stat()
        write_replay_checks(checks, extra_checks="      - validity: {not_null: [price]}\n", window="300ms")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        time.sleep(3)  # longer than the 2 s file watch: nothing reloads without the signal
        assert _status(proc, "not_null(price)") is None
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: _status(proc, "not_null(price)") == 2.0, 15, "the added check to fail on nulls")
        assert _logged(proc, "checks reloaded")

        # a changed file alone (new mtime) reloads too
        write_replay_checks(
            checks, extra_checks="      - validity: {not_null: [price, qty]}\n", window="300ms"
        )
        wait_until(lambda: _status(proc, "not_null(qty)") == 0.0, 15, "the file watcher's reload")

        # an invalid change is logged with its location; the previous checks keep running
        path.write_text("pipeline: replayed\ndatasets:\n  - name: trades\n    source: {kind: nope}\n")
        wait_until(lambda: _logged(proc, "reload rejected"), 15, "the rejected reload in the log")
        rejected = next(r for r in proc.log_records() if "reload rejected" in str(r.get("msg", "")))
        assert "replay.yaml" in str(rejected["msg"])
        seen = proc.metric("dqmon_rows_seen_total", dataset="trades") or 0.0
        wait_until(
            lambda: (proc.metric("dqmon_rows_seen_total", dataset="trades") or 0.0) > seen + 100,
            15,
            "rows still being checked",
        )
        assert _status(proc, "not_null(qty)") == 0.0
        trims = [r for r in proc.log_records() if "start-up code pages" in str(r.get("msg", ""))]
        assert len(trims) == 1, trims  # once, and checking went on after it
        assert proc.proc.poll() is None
        code, seconds = proc.terminate()
        assert code == 0 and seconds < 10, proc.log_tail()
    finally:
        proc.kill()
