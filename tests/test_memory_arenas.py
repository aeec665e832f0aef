"""``wsianon.io.memory.limit_malloc_arenas``: threads share one glibc malloc arena (issue 14:
a peak memory that does not drift with which thread allocated which read buffer)."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = r"""
import ctypes, os, sys, threading
from wsianon.io.memory import limit_malloc_arenas
took = limit_malloc_arenas() if sys.argv[1] == "limit" else None
def work():
    keep = [bytearray(50_000) for _ in range(20)]  # below the mmap threshold: from the thread's arena
    del keep
ts = [threading.Thread(target=work) for _ in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print("took", took, flush=True)
ctypes.CDLL(None).malloc_stats()  # per-arena statistics on stderr ("Arena 0:", "Arena 1:", ...)
"""


def _arenas(mode: str, env: dict | None = None) -> tuple[str, int]:
    r = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip(), sum(1 for line in r.stderr.splitlines() if line.startswith("Arena "))


def _glibc() -> bool:
    import platform

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _glibc(), reason="malloc arenas and malloc_stats are glibc's")
def test_threads_share_one_arena_when_limited():
    import os

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out, default = _arenas("plain", env)
    assert default > 1, "without the limit each allocating thread gets an arena of its own"
    out, limited = _arenas("limit", env)
    assert out == "took True"
    assert limited == 1


def test_user_choice_is_left_alone(monkeypatch):
    from wsianon.io.memory import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
