"""malloc_trim gives glibc's freed heap pages back: RSS drops for memory freed below a live chunk."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import pytest

from dqmon.runtime.memory import malloc_trim


def _rss_anon_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_trim_returns_freed_heap_pages_to_the_os():
    trim = malloc_trim()
    assert trim is not None
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    chunks = [libc.malloc(4096) for _ in range(20_000)]  # ~80 MB below the mmap threshold
    for chunk in chunks:
        ctypes.memset(chunk, 1, 4096)  # touch: resident
    keep = libc.malloc(4096)  # a live chunk above them: free() alone cannot shrink the heap
    for chunk in chunks:
        libc.free(chunk)
    before = _rss_anon_kb()
    trim()
    after = _rss_anon_kb()
    libc.free(keep)
    assert before - after > 40_000  # most of the 80 MB went back
