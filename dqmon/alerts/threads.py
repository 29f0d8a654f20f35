"""Which thread each notification belongs to (the outbox `thread_key`; a Slack thread).

- `group_by: alert` (default): one thread per alert episode, opened by its firing message; an
  SLO burn hosted by a firing check alert (alerts/slo_alerts.py) joins that alert's thread as a
  guest.
- `group_by: pipeline`: one thread per pipeline incident: the group's key (persisted, so a
  restart keeps it) is the thread of every notification while any announced alert of the
  pipeline fires; payloads carry `group_opened` / `group_closed`, and the notifier turns the
  parent resolved only when the group closes.

Every payload also carries `message_key`, the key of the alert's own message (its episode), so
an update edits that message even when it is a reply in someone else's thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dqmon.alerts.rules import AlertState
from dqmon.state.store import KeyValueState


class Threads:
    def __init__(self, pipeline: str, group_by: str, store: KeyValueState) -> None:
        self.pipeline = pipeline
        self.group_by = group_by
        self.store = store
        self._key = f"alerts/{pipeline}/group"
        group = store.get_state(self._key) if group_by == "pipeline" else None
        self._group: str | None = group if isinstance(group, str) else None

    def assign(
        self,
        fingerprint: str,
        event: str,
        state: AlertState,
        at: float,
        payload: dict[str, Any],
        states: Mapping[str, AlertState],
        host: str | None = None,
    ) -> str:
        """The thread key of this event; marks the payload (group/guest flags, message_key).
        `state` is the alert's state after the event; `states` all of the pipeline's."""
        own = state.episode or f"{fingerprint}:none"
        payload["message_key"] = own
        guest = host is not None if event == "firing" else state.guest
        if guest:
            # a guest follows its host's thread and never opens, holds or closes a group
            payload["guest"] = True
            return (host if event == "firing" else state.thread) or own
        if self.group_by == "pipeline":
            return self._group_thread(fingerprint, event, at, payload, states)
        # a firing opens the episode's thread; later events follow it
        return own if event == "firing" else (state.thread or own)

    def _group_thread(
        self,
        fingerprint: str,
        event: str,
        at: float,
        payload: dict[str, Any],
        states: Mapping[str, AlertState],
    ) -> str:
        """The group opens with the first announced alert, gathers the others as replies, and
        closes when the last announced alert resolves."""
        announced = sum(1 for s in states.values() if s.notified == "firing" and not s.guest)
        if self._group is None or (event == "firing" and announced <= 1):
            self._group = f"{self.pipeline}:group:{at:.3f}:{fingerprint[:8]}"
            self.store.put_state(self._key, self._group)
            payload["group_opened"] = True
        group = self._group
        payload["grouped"] = True
        payload["group_firing"] = announced
        if event == "resolved" and announced == 0:
            payload["group_closed"] = True
            self._group = None
            self.store.put_state(self._key, None)
        return group
