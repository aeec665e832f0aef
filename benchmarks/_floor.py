"""The floor of any verified copy with a SHA-256 certificate, as a child process of
``bench_native.py --floor-pairs``: the kernel copies SRC to DST (``copy_file_range``, as ``cp``
does) while a second thread reads SRC and hashes it (SHA-256 for the certificate, xxh3_128 to
confirm the read-back), DST is fsynced, then read back once and its xxh3_128 compared.  No
parsing, no redaction, no canary scan, no tile identity: what wsianon does beyond this is its
verification proper.

    python benchmarks/_floor.py SRC DST
"""

from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import xxhash

CHUNK = 8 << 20


def tap(src: str, size: int) -> str:
    fd = os.open(src, os.O_RDONLY)
    sha, xxh = hashlib.sha256(), xxhash.xxh3_128()

    def update(b: bytes) -> None:
        sha.update(b)
        xxh.update(b)

    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pos, pending = 0, None
            while pos < size:
                buf = os.pread(fd, min(CHUNK, size - pos), pos)
                if not buf:
                    raise SystemExit(f"{src}: shorter than {size} bytes")
                if pending is not None:
                    pending.result()
                pending = pool.submit(update, buf)
                pos += len(buf)
            if pending is not None:
                pending.result()
    finally:
        os.close(fd)
    sha.hexdigest()
    return xxh.hexdigest()


def main(src: str, dst: str) -> None:
    s = os.open(src, os.O_RDONLY)
    d = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    size = os.fstat(s).st_size
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashed = pool.submit(tap, src, size)
        pos = 0
        while pos < size:
            n = os.copy_file_range(s, d, min(64 << 20, size - pos), pos, pos)
            if n <= 0:
                raise SystemExit(f"{src}: copy_file_range stopped at {pos}")
            pos += n
        os.fsync(d)
        expected = hashed.result()
    os.close(s)
    os.close(d)
    fd = os.open(dst, os.O_RDONLY)
    xxh, pos = xxhash.xxh3_128(), 0
    while buf := os.pread(fd, CHUNK, pos):
        xxh.update(buf)
        pos += len(buf)
    os.close(fd)
    if xxh.hexdigest() != expected:
        raise SystemExit(f"{dst}: read-back differs from what was written")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
