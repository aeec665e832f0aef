"""The verifier's single read-back pass over one output file.

Every byte-level check that needs the output's bytes is fed from one sequential read:

* the canary scan (``wsianon.io.scan.ScanStream``: hyperscan or the regex engine),
* the pyramid tile identity (``wsianon.verify.tileid.Feeder``, output side),
* the file's digest for the record and the certificate (``wsianon.io.digests``: remembered,
  so the record does not read the output again) — its SHA-256, or, for a file the applier
  wrote and registered, the xxh3_128 that proves the file is the bytes whose SHA-256 the
  applier took while writing them.

Structure (IFDs, OpenSlide) is read by the other checks with small reads; the vocabulary scan
reads only the bytes outside pixel data.  The digest (which releases the GIL) runs in a second
thread over the same buffer while this thread scans it; the next buffer is read meanwhile.
Memory: two buffers of ``CHUNK`` bytes, whatever the file's size.
"""

from __future__ import annotations

import hashlib
import os

import xxhash
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from wsianon.io import digests
from wsianon.io.scan import Finding, Scanner, ScanStream, SplitScanner, SplitScanStream
from wsianon.verify.tileid import Feeder

CHUNK = 8 << 20


@dataclass
class ReadBack:
    name: str
    size: int = 0
    sha256: str = ""
    findings: list[Finding] = field(default_factory=list)


def read_back(path: Path, name: str, scanner: Scanner | SplitScanner | None = None, feeder: Feeder | None = None, chunk: int = CHUNK, skip=None) -> ReadBack:
    """Read ``path`` once; feed the canary scan, the tile identity and the digest from the same buffers.

    The digest is SHA-256, or xxh3_128 for a file the applier registered with the digests of
    the bytes it wrote (``wsianon.io.digests.expect``): equal xxh3_128 digests prove the file
    holds those bytes, so their SHA-256 is the file's; a file that does not match is read once
    more for its own SHA-256.  ``skip``: byte ranges a ``SplitScanner``'s encoded forms skip
    (the output's pixel data proven identical to the source's)."""
    res = ReadBack(name)
    stream = scanner.stream(name, skip=skip) if scanner is not None else None
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        fast = digests.expected_xxh3(fd) is not None
        h = xxhash.xxh3_128() if fast else hashlib.sha256()
        res.size = _read_once(fd, chunk, h, stream, feeder)
        whole = os.fstat(fd).st_size == res.size
        sha = digests.confirm(fd, h.hexdigest()) if fast and whole else None
        if sha is None and fast:
            sha = digests.sha256_of(fd, chunk=chunk)
        res.sha256 = sha if sha is not None else h.hexdigest()
        if whole:
            digests.remember(fd, res.sha256)
    finally:
        os.close(fd)
    if stream is not None:
        res.findings = stream.close()
    return res


def _read_once(fd: int, chunk: int, h, stream: ScanStream | SplitScanStream | None, feeder: Feeder | None) -> int:
    """Read ``fd`` sequentially, the next buffer and the digest ``h`` in a second thread while
    this one scans; returns the bytes read."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pos = 0
        nxt = pool.submit(os.pread, fd, chunk, 0)
        while True:
            buf = nxt.result()
            if not buf:
                break
            hashed = pool.submit(h.update, buf)
            nxt = pool.submit(os.pread, fd, chunk, pos + len(buf))
            if stream is not None:
                stream.feed(buf)
            if feeder is not None:
                feeder.feed(pos, buf)
            hashed.result()
            pos += len(buf)
    return pos
