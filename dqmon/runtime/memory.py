"""Process-wide allocator settings of the sidecar.

glibc gives each thread that allocates under contention its own malloc arena (up to 8 per core),
and an arena keeps the pages its freed chunks sit in. A sidecar runs a dozen Python threads and
librdkafka's, each touching a few small arenas, so RSS creeps by arenas rather than by data.
Two arenas are plenty for a process whose hot work happens in Polars (its own jemalloc) and numpy.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
DEFAULT_ARENAS = 2


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas, unless MALLOC_ARENA_MAX is set (the operator's choice wins) or
    the C library is not glibc; True when the cap was applied. Call before threads start."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(_M_ARENA_MAX, arenas))
    log.debug("malloc arenas capped at %d: %s", arenas, applied)
    return applied
