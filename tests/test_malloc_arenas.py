"""`dqmon run` caps glibc's malloc arenas; an operator's MALLOC_ARENA_MAX still wins.

Counted from glibc's own `malloc_stats()` report (one "Arena N:" block per arena) after eight
threads have each allocated, in a fresh interpreter per case.
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
