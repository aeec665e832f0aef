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
"""

from __future__ import annotations

import ctypes
import os
import sys

M_ARENA_MAX = -8  # glibc's mallopt parameter number


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
