"""The SQL cursor's position in the state store, so a restarted sidecar continues where it stopped."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from dqmon.state.store import KeyValueState


class CursorStore:
    """The last value of the cursor column read, encoded with its type and column name."""

    def __init__(self, store: KeyValueState, key: str, column: str | None) -> None:
        self._store = store
        self.key = key
        self.column = column
        self.value: Any = None

    def advance(self, value: Any) -> None:
        if value is None:
            return
        self.value = value
        if isinstance(value, datetime):
            encoded: dict[str, Any] = {"type": "datetime", "value": value.isoformat()}
        elif isinstance(value, date):
            encoded = {"type": "date", "value": value.isoformat()}
        elif isinstance(value, bool | int | float | str):
            encoded = {"type": type(value).__name__, "value": value}
        else:
            encoded = {"type": "str", "value": str(value)}
        encoded["column"] = self.column
        self._store.put_state(self.key, encoded)

    def restore(self) -> Any:
        """The stored position (also kept in `value`), or None without one."""
        if self.column is None:
            return None
        stored = self._store.get_state(self.key)
        if not isinstance(stored, dict) or stored.get("column") != self.column:
            return None  # a changed cursor column makes the old position meaningless
        kind, raw = stored.get("type"), stored.get("value")
        if raw is None:
            return None
        if kind == "datetime":
            value: Any = datetime.fromisoformat(str(raw))
        elif kind == "date":
            value = date.fromisoformat(str(raw))
        else:
            value = raw
        self.value = value
        return value
