"""Give freed C-heap memory back to the OS, so a long-running sidecar's RSS follows its use.

librdkafka's threads, numpy and Python's own large objects allocate from glibc malloc, which
keeps freed chunks in per-thread arenas; over hours the unused tops and holes of those arenas
stay resident. `malloc_trim(0)` returns them (all arenas, glibc >= 2.8). On the demo stream it
cut the private RSS by ~16 MB after 5 minutes (bench/rss.py; docs/performance.md). Polars'
jemalloc is not affected: it decays its own dirty pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)
TRIM_EVERY_SECONDS = 10


def malloc_trim() -> Callable[[], None] | None:
    """A callable trimming glibc's heaps, or None where there is no glibc (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def run() -> None:
        trim(0)

    return run
