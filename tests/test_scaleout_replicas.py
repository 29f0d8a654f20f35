"""Scale-out on the real broker and real PostgreSQL: replicas in `mode: group` over a 6-partition
topic give, window by window, the verdicts of one reader of every partition.

Three in-process Runtimes share one consumer group and one PostgreSQL schema; a plain single
reader (assign mode, same aligned windows, the unchanged engine) reads the same records. Bursts
sit in the middle of windows so every reader puts a burst in the same window. The volume minimum
(100) is met by the topic (150 per burst) and by no replica alone (about 50 each).
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from dqmon.config.loader import load_checks
from dqmon.config.settings import Settings
from dqmon.engine import DatasetEngine
from dqmon.runtime.app import Runtime
from dqmon.sources.kafka import KafkaSource
from tests.e2e_helpers import wait_until
from tests.fixtures.broker import make_producer
from tests.scaleout_helpers import (
    EVERY_KIND,
    Recorder,
    Verdict,
    assigned,
    checks_yaml,
    judging,
    produce_spread,
    record_judges,
    sleep_to_window_phase,
    trades,
    write_checks,
)

pytestmark = [pytest.mark.broker, pytest.mark.postgres]
PARTITIONS = 6


class ReferenceReader:
    """One reader of every partition (assign mode), aligned windows, the unchanged engine."""

    def __init__(self, checks_dir: Path) -> None:
        config = load_checks(checks_dir)
        pipeline, dataset = next(iter(config.datasets()))
        self.source = KafkaSource(pipeline, dataset)
        self.source.report_partitions = True  # the same epoch-aligned windows as the replicas
        self.engine = DatasetEngine(pipeline, dataset, base_dir=config.base_dir(pipeline.pipeline))
        self.verdicts: dict[float, Verdict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> ReferenceReader:
        self.source.start()
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            batch = self.source.poll_batch(0.3)
            if batch is not None:
                self.verdicts[batch.window_start.timestamp()] = Verdict(batch, self.engine.evaluate(batch))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.source.close()


def replica(checks: Path, data: Path, dsn: str) -> Runtime:
    settings = Settings(data_dir=data, http_host="127.0.0.1", http_port=0, state_dsn=SecretStr(dsn))
    return Runtime(checks, settings, registry=CollectorRegistry(), watch_files=False)


def test_three_replicas_give_the_verdicts_of_one_reader(tmp_path, bootstrap, topic_factory, pg_schema_dsn):
    topic = topic_factory(PARTITIONS)
    pipeline = f"scale-{uuid.uuid4().hex[:6]}"
    group_dir = write_checks(tmp_path / "group", checks_yaml(pipeline, topic, bootstrap, extra=EVERY_KIND))
    single_dir = write_checks(
        tmp_path / "single", checks_yaml(pipeline, topic, bootstrap, mode="assign", extra=EVERY_KIND)
    )
    reference = ReferenceReader(single_dir).start()
    recorder = Recorder()
    runtimes = [replica(group_dir, tmp_path / f"data{i}", pg_schema_dsn) for i in range(3)]
    try:
        for i, runtime in enumerate(runtimes):
            runtime.start()
            record_judges(runtime, recorder, f"r{i}")
        wait_until(
            lambda: (
                all(assigned(r) for r in runtimes)
                and sorted(p for r in runtimes for p in assigned(r)) == list(range(PARTITIONS))
            ),
            40,
            "the group to spread six partitions over three replicas",
        )
        # a window that began before the last assignment is partial: start once one was whole
        wait_until(
            lambda: any(not v.batch.partial for v in list(recorder.verdicts.values())),
            20,
            "a merged window covering every partition",
        )
        assert len(judging(runtimes)) == 1  # one judge for the pipeline
        producer = make_producer(bootstrap)
        bursts: dict[float, str] = {}
        kinds = {
            "clean": {},
            "nulls": {"null_every": 10},
            "dupes": {"dup_from": 75},  # ids of the first half repeat: the copies are on other partitions
            "stale": {"age_seconds": 30},
            "low": {"count": 60},
            "shifted": {"price_factor": 3.0},
            "broken": {"bad_every": 15},
        }
        for kind in ("clean", "clean", "nulls", "dupes", "stale", "low", "shifted", "broken", "clean"):
            start = sleep_to_window_phase(0.5)
            options: dict[str, Any] = {"count": 150, **kinds[kind]}
            values = trades(options.pop("count"), prefix=f"{kind}-{start:.0f}", **options)
            produce_spread(producer, topic, values, PARTITIONS)
            bursts[start] = kind
        last = max(bursts)
        wait_until(
            lambda: last in recorder.verdicts and last in reference.verdicts, 20, "the last burst judged"
        )
    finally:
        for runtime in runtimes:
            runtime.stop(timeout=5)
        reference.stop()

    for start, kind in sorted(bursts.items()):
        merged, single = recorder.verdicts[start], reference.verdicts[start]
        where = f"window {start} ({kind})"
        assert merged.batch.partial == single.batch.partial, where  # the first burst after silence
        assert merged.batch.rows_seen == single.batch.rows_seen == (60 if kind == "low" else 150), where
        assert merged.batch.rows_produced == single.batch.rows_produced, where
        assert merged.statuses() == single.statuses(), where
        assert merged.batch.decode_errors == single.batch.decode_errors, where
        for check in single.statuses():  # the same numbers, not just the same statuses
            if check != "freshness":
                assert merged.value(check) == pytest.approx(single.value(check)), (where, check)
        assert merged.value("unique(trade_id)") == single.value("unique(trade_id)"), where
        freshness = (merged.value("freshness"), single.value("freshness"))
        assert freshness[0] is not None and freshness[1] is not None
        assert abs(freshness[0] - freshness[1]) < 1.0, where  # both: window end - newest event time
        complete = next(r for r in merged.results if r.check == "scaleout:partitions")
        assert complete.status.label == "ok", where
    statuses = {kind: recorder.verdicts[s].statuses() for s, kind in bursts.items()}
    # each verdict is the topic's: the volume minimum holds although no replica read 100 rows
    assert statuses["clean"]["volume"] == "ok"
    assert statuses["low"]["volume"] == "fail"
    assert statuses["nulls"]["not_null(price)"] == "fail"
    assert statuses["dupes"]["unique(trade_id)"] == "fail"
    assert statuses["stale"]["freshness"] == "fail"
    assert statuses["shifted"]["distribution"] == "fail"
    assert statuses["shifted"]["sql"] == "fail"
    assert statuses["broken"]["schema:decode_errors"] == "fail"
    assert statuses["clean"] == {k: "ok" for k in statuses["clean"]}
    assert len(set(recorder.judges.values())) == 1  # nobody else judged
