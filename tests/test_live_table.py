"""On a terminal `dqmon run` shows a live status table (driven through a real pseudo-terminal)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e_helpers import write_replay_checks, write_trades


def _read_until(fd: int, needles: tuple[str, ...], timeout: float) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(n in seen for n in needles):
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536).decode("utf-8", "replace")
            except OSError:
                break
    return seen


def test_run_on_a_tty_shows_the_live_table(tmp_path: Path) -> None:
    checks = tmp_path / "checks"
    write_replay_checks(checks, window="300ms")
    write_trades(checks / "trades.ndjson")
    leader, follower = pty.openpty()
    env = {
        **os.environ,
        "DQMON_DATA_DIR": str(tmp_path / "data"),
        "DQMON_HTTP_HOST": "127.0.0.1",
        "COLUMNS": "200",
        "LINES": "40",
        "TERM": "xterm",
    }
    dqmon = Path(sys.executable).parent / "dqmon"
    process = subprocess.Popen(
        [str(dqmon), "run", "--checks", str(checks), "--http-port", "0"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    try:
        screen = _read_until(leader, ("alerts firing", "replayed/trades", "batches"), 30)
        assert "alerts firing" in screen and "replayed/trades" in screen, screen[-2000:]
        # the table refreshes: the batch counter moves
        later = _read_until(leader, ("\x00never",), 2.0)
        assert "replayed/trades" in later
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(15)
        os.close(leader)
    assert code == 0
