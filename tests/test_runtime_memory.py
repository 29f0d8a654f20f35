"""`dqmon run` caps glibc's malloc arenas and fixes its mmap/trim thresholds (an operator's
MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ still wins), and hands code
pages back to the kernel once it has settled.

Arenas are counted from glibc's own `malloc_stats()` report (one "Arena N:" block per arena) after
eight threads have each allocated; whether a block was mmapped is read from its glibc chunk header
(the IS_MMAPPED bit of the size word before it). A fresh interpreter per case.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

PROGRAM = """
import ctypes, ctypes.util, sys, threading
from dqmon.runtime.memory import limit_malloc_arenas
print(limit_malloc_arenas(), flush=True)
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
kept = []
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    kept.extend(libc.malloc(4096) for _ in range(64))
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc.malloc_stats()
"""


def _arenas(extra_env: dict[str, str]) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | extra_env
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.strip(), len(re.findall(r"^Arena \d+:", out.stderr, flags=re.MULTILINE))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_run_caps_arenas_unless_the_operator_chose() -> None:
    applied, capped = _arenas({})
    assert applied == "True"
    assert 1 <= capped <= 2, capped
    applied, chosen = _arenas({"MALLOC_ARENA_MAX": "8"})
    assert applied == "False"
    assert chosen > 2, chosen  # the eight threads spread over more arenas when not capped


THRESHOLDS = """
import ctypes, ctypes.util, sys
from dqmon.runtime.memory import fix_malloc_thresholds
print(fix_malloc_thresholds() if sys.argv[1] == "fix" else "skipped")
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(8 << 20))  # freeing an 8 MiB mmapped block raises glibc's dynamic threshold
block = libc.malloc(512 << 10)
print(bool(ctypes.c_size_t.from_address(block - ctypes.sizeof(ctypes.c_size_t)).value & 2))
"""


def _large_block_mmapped(mode: str, extra_env: dict[str, str]) -> tuple[str, bool]:
    names = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    env = {k: v for k, v in os.environ.items() if k not in names} | extra_env
    out = subprocess.run(
        [sys.executable, "-c", THRESHOLDS, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    applied, mmapped = out.stdout.split()
    return applied, mmapped == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_run_fixes_malloc_thresholds_unless_the_operator_chose() -> None:
    # glibc's default: after the 8 MiB block, a 512 KiB block comes from the heap
    assert _large_block_mmapped("skip", {}) == ("skipped", False)
    assert _large_block_mmapped("fix", {}) == ("True", True)
    assert _large_block_mmapped("fix", {"MALLOC_MMAP_THRESHOLD_": str(16 << 20)}) == ("False", False)


TRIM = """
import mmap, os, sys, tempfile, zlib
from dqmon.runtime.memory import trim_startup_pages
def rss_file():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssFile:")) / 1024
with tempfile.NamedTemporaryFile(dir=sys.argv[1]) as f:
    f.write(os.urandom(32 << 20)); f.flush(); os.fsync(f.fileno())
    mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    checksum = zlib.crc32(mapped)  # touches every page
    before = rss_file()
    trimmed = trim_startup_pages()
    after = rss_file()
    print(trimmed is not None, before - after, zlib.crc32(mapped) == checksum)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise(MADV_PAGEOUT)")
def test_trim_hands_back_file_pages_and_they_come_back_intact(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", TRIM, str(tmp_path)], capture_output=True, text=True, timeout=60, check=True
    )
    supported, dropped_mb, intact = out.stdout.split()
    if supported == "False":
        pytest.skip("kernel without MADV_PAGEOUT (Linux < 5.4)")
    assert float(dropped_mb) >= 24  # of the 32 MiB mapped file, whose pages only this process maps
    assert intact == "True"  # read again after the trim: faulted back in, same bytes
