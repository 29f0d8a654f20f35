"""Process-wide allocator settings of the sidecar.

glibc gives each thread that allocates under contention its own malloc arena (up to 8 per core),
and an arena keeps the pages its freed chunks sit in. A sidecar runs a dozen Python threads and
librdkafka's, each touching a few small arenas, so RSS creeps by arenas rather than by data.
Two arenas are plenty for a process whose hot work happens in Polars (its own jemalloc) and numpy.

glibc also raises its mmap threshold to the size of each mmapped block freed (up to 32 MiB), and
its trim threshold to twice that: after one large numpy temporary, blocks of that size come from
the heap and up to 64 MiB of free heap top is kept. Between long-lived small arrays (rolling
references) that heap fragments and RSS creeps. Fixed thresholds keep large blocks in their own
mappings, returned on free, at the cost of page faults on each large temporary (~65 us per MiB,
measured on an 8 MiB numpy temporary; blocks under 256 KiB, all of a 5 s window at 200 msg/s, are
not affected).

A file page counts in RSS from its first use until the kernel reclaims it, and the kernel reclaims
only under pressure. Starting up touches code that never runs again (Polars', pydantic-core's and
libpython's initialisation, building validators, the first query plans): `trim_startup_pages`,
run once when the sidecar has settled, hands those pages back; what is still used is faulted in on
its next use, so RSS afterwards is the working set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys

log = logging.getLogger(__name__)

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_MADV_PAGEOUT = 21  # Linux 5.4 and later
DEFAULT_ARENAS = 2
MMAP_THRESHOLD = 256 * 1024
TRIM_THRESHOLD = 1024 * 1024


@functools.cache
def _libc_name() -> str | None:
    return ctypes.util.find_library("c")  # runs `ldconfig -p`: once per process


def _mallopt(param: int, value: int) -> bool:
    name = _libc_name()
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(param, value))


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas, unless MALLOC_ARENA_MAX is set (the operator's choice wins) or
    the C library is not glibc; True when the cap was applied. Call before threads start."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    applied = _mallopt(_M_ARENA_MAX, arenas)
    log.debug("malloc arenas capped at %d: %s", arenas, applied)
    return applied


def fix_malloc_thresholds(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds (which turns their growth off), unless the operator
    set either (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_); True when both were applied."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    applied = _mallopt(_M_MMAP_THRESHOLD, mmap_threshold) and _mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    log.debug("malloc thresholds fixed (mmap %d, trim %d): %s", mmap_threshold, trim_threshold, applied)
    return applied


def status_mb(field: str = "VmRSS") -> float:
    """A memory field of /proc/self/status (VmRSS, RssAnon, RssFile) in MB; 0 where there is none."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _read_only_file_mappings() -> list[tuple[int, int]]:
    regions = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/") and "w" not in fields[1]:
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                regions.append((lo, hi))
    return regions


def trim_startup_pages() -> tuple[float, float] | None:
    """Ask the kernel to reclaim this process's pages of read-only file mappings (MADV_PAGEOUT:
    shared-library code and constants; never anonymous memory or a writable mapping). The kernel
    leaves pages that another process maps too. Returns RSS in MB before and after, or None where
    the kernel or platform cannot (not Linux, or older than 5.4)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    before = status_mb()
    advised = 0
    for lo, hi in _read_only_file_mappings():
        advised += madvise(lo, hi - lo, _MADV_PAGEOUT) == 0
    if not advised:  # EINVAL for every mapping: a kernel without MADV_PAGEOUT
        return None
    after = status_mb()
    log.info("returned start-up code pages to the kernel: RSS %.1f -> %.1f MB", before, after)
    return before, after
