"""Issue 10 #6: the window in which a stream starts producing (or resumes after a silence of a
window or more) saw only part of its traffic: the Kafka source marks it partial, so volume does
not page "493 rows below the minimum 500" for it. Real tansu broker."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from dqmon.batch import MicroBatch
from tests.fixtures.broker import make_producer, produce
from tests.test_kafka_source import open_source, trades

pytestmark = pytest.mark.broker


def poll_windows(source: Any, n: int) -> list[MicroBatch]:
    batches: list[MicroBatch] = []
    deadline = time.monotonic() + n * 3 + 10
    while len(batches) < n and time.monotonic() < deadline:
        batch = source.poll_batch(0.5)
        if batch is not None:
            batches.append(batch)
    return batches


def test_the_window_a_stream_starts_or_resumes_in_is_partial(bootstrap, topic):
    source = open_source(topic, bootstrap, mode="assign", start="latest", window="1s")
    stop = threading.Event()

    def keep_producing() -> None:
        producer = make_producer(bootstrap, exact=False)
        i = 0
        while not stop.is_set():
            produce(producer, topic, trades(5, i))
            i += 5
            time.sleep(0.1)

    try:
        quiet = poll_windows(source, 2)
        assert [b.rows_seen for b in quiet] == [0, 0]
        assert not any(b.partial for b in quiet)  # nothing to judge as partial: empty windows
        thread = threading.Thread(target=keep_producing, daemon=True)
        thread.start()
        flowing = poll_windows(source, 5)
        stop.set()
        thread.join(5)
        with_rows = [b for b in flowing if b.rows_seen]
        assert with_rows, [b.rows_seen for b in flowing]
        # the first window with rows followed an empty one: partial; the full ones after it are not
        assert with_rows[0].partial
        assert len(with_rows) >= 3 and not any(b.partial for b in with_rows[1:-1])
        silence = poll_windows(source, 3)
        assert silence[-1].rows_seen == 0
        produce(make_producer(bootstrap), topic, trades(10, 10_000))
        resumed = next(b for b in poll_windows(source, 4) if b.rows_seen)
        assert resumed.partial  # resuming after a silence of a window or more
    finally:
        stop.set()
        source.close()
