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


_GC_PROBE = r"""
import atexit, gc, sys
import wsianon.cli as cli
seen = {}
def fake_app():
    seen["during"] = (gc.get_threshold(), gc.get_freeze_count())
    if sys.argv[1] == "interrupt":
        raise KeyboardInterrupt
    raise SystemExit(0)
cli.app = fake_app
atexit.register(lambda: print(seen["during"][0], gc.get_freeze_count() - seen["during"][1] > 10_000, flush=True))
cli.main()
"""


@pytest.mark.parametrize("how", ["exit", "interrupt"])
def test_cli_collects_less_often_and_skips_teardown_collections(how):
    """``wsianon.io.memory.collect_less_often`` while the command runs (the work's garbage is
    still collected), and every object frozen once it is done, however it ends
    (the interpreter's teardown then skips its full collections: 0.3 s of a DICOM run)."""
    from wsianon.io.memory import GC_THRESHOLDS

    r = subprocess.run([sys.executable, "-c", _GC_PROBE, how], capture_output=True, text=True, timeout=60)
    assert r.returncode == (130 if how == "interrupt" else 0), r.stderr
    assert r.stdout.strip() == f"{GC_THRESHOLDS} True"  # the imported modules' objects frozen at the end
