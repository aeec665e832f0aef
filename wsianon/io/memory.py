"""Process-wide allocator setting: peak memory that does not grow with the slide.

glibc gives every thread that allocates its own malloc arena (up to 8 per core).  The copy and
the read-back each read 8 MiB buffers in a helper thread while the main thread scans them; a
buffer freed into one arena is not reused by another, so each thread's arena keeps its own
high-water mark of freed buffers resident, and which thread happened to allocate what changes
the peak by up to ~10 MiB from one run to the next.  With one arena every thread reuses the
same freed buffers.  Measured on a generated 0.5 GiB Aperio slide, whole process (the launcher
of benchmarks/_common.py), three runs each: peak RSS 112-113 MiB with one arena against 130 MiB
with glibc's default, wall and CPU time the same within the machine's noise (the threads
allocate a few large buffers, not many small objects, and hold the GIL while they do).

The cyclic garbage collector (``collect_less_often``, ``no_teardown_collections``): a DICOM
conversion allocates many small objects (wsidicom's per-tile work items), so CPython's default
thresholds (700, 10, 10) ran 406 collections in a 0.6 GB conversion, 0.19-0.21 s (0.13-0.15 s of
them full collections over every live object); with (10000, 10, 10) 30 collections, 0.10 s, and
peak RSS +3 MiB.  At exit the interpreter's teardown ran further full collections over the
~200,000 objects still alive: 0.25-0.32 s between the end of the work and the process's end
(``perf``: ``gc_collect_main``, ``visit_decref``); with every object frozen first
(``gc.freeze``: the collector ignores them) 0.03 s.  Native runs: 0.04 s of collections and
0.02 s of teardown either way.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

M_ARENA_MAX = -8  # glibc's mallopt parameter number
GC_THRESHOLDS = (10_000, 10, 10)  # CPython's default: (700, 10, 10); see the module docstring


def collect_less_often() -> None:
    """Run the cyclic garbage collector about 14 times less often (``GC_THRESHOLDS``): the work's
    objects are mostly freed by reference counting; cycles wait a little longer."""
    gc.set_threshold(*GC_THRESHOLDS)


def no_teardown_collections() -> None:
    """Call when the process's work is done: the interpreter's teardown then skips its collections
    over every object still alive (they are freed by reference counting or with the process).
    ``atexit`` handlers still run; only cyclic garbage is left to the operating system."""
    gc.freeze()


def limit_malloc_arenas(n: int = 1) -> bool:
    """Ask glibc for at most ``n`` malloc arenas, before threads start; True when it took.

    Left alone where the user chose (``MALLOC_ARENA_MAX`` set) and off Linux; a C library
    without ``mallopt`` (or one that refuses, as musl's stub does) changes nothing."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_ARENA_MAX, n) == 1
