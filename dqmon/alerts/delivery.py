"""The delivery worker: drains the outbox with bounded concurrency, retries and backoff.

A thread leases due items from the state store (at most one per thread and target, so replies
follow their firing message), hands them to a small thread pool (`concurrency` sends at once)
and records each outcome: delivered only after the notifier returned, retried with exponential
backoff (at least the server's Retry-After), failed after `max_attempts` or a permanent error.

Outcomes are counted per notifier (`stats.snapshot()`), and `on_outcome(notifier, outcome)`
lets telemetry count them as they happen. Outcomes: delivered, retried, failed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from dqmon.alerts.notifiers.base import Notifier
from dqmon.alerts.routing import target_notifier
from dqmon.errors import DqmonError, NotifyError, StateError
from dqmon.state.outbox import OutboxItem
from dqmon.state.store import OutboxStore

log = logging.getLogger(__name__)

OUTCOMES = ("delivered", "retried", "failed")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 1.0
    max_seconds: float = 300.0
    jitter: float = 0.1  # ± share of the delay, so replicas do not retry in lockstep

    def delay(self, attempts: int, retry_after: float | None) -> float:
        """Seconds before attempt number `attempts + 1` (attempts already made ≥ 1)."""
        backoff = min(self.max_seconds, self.base_seconds * 2.0 ** max(0, attempts - 1))
        backoff *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(backoff, retry_after or 0.0)


class DeliveryStats:
    """Thread-safe outcome counters by (notifier, outcome)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, notifier: str, outcome: str) -> None:
        with self._lock:
            self._counts[(notifier, outcome)] = self._counts.get((notifier, outcome), 0) + 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def get(self, notifier: str, outcome: str) -> int:
        with self._lock:
            return self._counts.get((notifier, outcome), 0)


class DeliveryWorker:
    """Background delivery of the outbox; `run_once()` drives it synchronously in tests/CLI."""

    def __init__(
        self,
        store: OutboxStore,
        notifiers: Mapping[str, Notifier],
        *,
        concurrency: int = 4,
        poll_interval: float = 0.5,
        lease_seconds: float = 60.0,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[str, str], None] | None = None,
        release_leases_on_start: bool = True,
    ) -> None:
        self.store = store
        self.notifiers = dict(notifiers)
        self.concurrency = max(1, concurrency)
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self.on_outcome = on_outcome
        self.stats = DeliveryStats()
        self.owner = uuid.uuid4().hex
        self._release_on_start = release_leases_on_start
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="dqmon-notify")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._release_on_start:
            # single-process SQLite: any lease left is from a process that died (kill -9)
            released = self.store.release_outbox_leases()
            if released:
                log.info("released %d outbox lease(s) left by a previous run", released)
        self._thread = threading.Thread(target=self._loop, name="dqmon-delivery", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the outbox now (after the manager enqueued something)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, let in-flight sends finish (up to `timeout`), close notifiers."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for notifier in self.notifiers.values():
            notifier.close()

    def pending(self) -> int:
        return self.store.outbox_counts().get("pending", 0)

    def run_once(self) -> int:
        """Claim what is due now, deliver it, wait for those sends; returns items attempted."""
        items = self.store.claim_outbox(self.clock(), self.concurrency, self.lease_seconds, self.owner)
        futures = [self._pool.submit(self._deliver, item) for item in items]
        for f in futures:
            f.result()
        return len(items)

    # ------------------------------------------------------------------ internals
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._claim_and_submit()
            except DqmonError as exc:
                log.warning("delivery worker: %s", exc)
            except Exception:  # a bug here must not end delivery for good
                log.exception("delivery worker: unexpected error")
            self._wake.wait(self.poll_interval)

    def _claim_and_submit(self) -> None:
        with self._inflight_lock:
            free = self.concurrency - self._inflight
        if free <= 0:
            return
        items = self.store.claim_outbox(self.clock(), free, self.lease_seconds, self.owner)
        for item in items:
            with self._inflight_lock:
                self._inflight += 1
            future: Future[None] = self._pool.submit(self._deliver, item)
            future.add_done_callback(self._done)

    def _done(self, _: Future[None]) -> None:
        with self._inflight_lock:
            self._inflight -= 1
        self._wake.set()  # a slot is free; also lets the next item of the same thread go

    def _deliver(self, item: OutboxItem) -> None:
        name = target_notifier(item.target)
        notifier = self.notifiers.get(name)
        try:
            if notifier is None:
                raise NotifyError(f"no notifier configured for target {item.target!r}", permanent=True)
            # a firing alert opens its own thread, or replies in its pipeline's group thread
            # (or in the thread of the alert whose budget burn it reports)
            message_key = _message_key(item)
            ref: str | None = None
            if item.event == "update":
                notifier.update(item, self.store.get_thread(message_key or item.thread_key, item.target))
            else:
                ref = notifier.send(item, self.store.get_thread(item.thread_key, item.target))
        except NotifyError as exc:
            self._failed(item, name, exc)
            return
        except Exception as exc:  # a notifier bug is a failed attempt, never a lost item
            log.exception("notifier %s raised", name)
            self._failed(item, name, NotifyError(f"{name}: {type(exc).__name__}"))
            return
        try:
            self.store.complete_outbox(item, self.clock(), ref, message_key)
        except StateError:
            # sent but not recorded: the lease expires and it is sent again (at-least-once)
            log.exception("could not mark outbox item %d delivered", item.id)
            return
        self._count(name, "delivered")

    def _failed(self, item: OutboxItem, name: str, exc: NotifyError) -> None:
        attempts = item.attempts + 1
        now = self.clock()
        if exc.permanent or attempts >= self.retry.max_attempts:
            log.error(
                "notification %d to %s failed after %d attempt(s): %s", item.id, item.target, attempts, exc
            )
            self.store.fail_outbox(item, now, str(exc))
            self._count(name, "failed")
            return
        delay = self.retry.delay(attempts, exc.retry_after)
        log.warning(
            "notification %d to %s: %s; retry %d in %.1fs", item.id, item.target, exc, attempts, delay
        )
        self.store.retry_outbox(item, now + delay, str(exc))
        self._count(name, "retried")

    def _count(self, name: str, outcome: str) -> None:
        self.stats.add(name, outcome)
        if self.on_outcome is not None:
            try:
                self.on_outcome(name, outcome)
            except Exception:  # telemetry must not break delivery
                log.exception("on_outcome callback failed")


def _message_key(item: OutboxItem) -> str | None:
    """The key of the alert's own message (its episode), under which its reference is kept."""
    key = item.payload.get("message_key")
    return str(key) if key else None
