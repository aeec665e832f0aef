"""The verifier's single read-back pass over one output file.

Every byte-level check that needs the output's bytes is fed from one sequential read:

* the canary scan (``wsianon.io.scan.ScanStream``: hyperscan or the regex engine),
* the pyramid tile identity (``wsianon.verify.tileid.Feeder``, output side),
* the file's SHA-256, which the record and the certificate need (``wsianon.io.digests``:
  remembered, so the record does not read the output again).

Structure (IFDs, OpenSlide) is read by the other checks with small reads; the vocabulary scan
reads only the bytes outside pixel data.  SHA-256 (which releases the GIL) runs in a second
thread over the same buffer while this thread scans it; the next buffer is read meanwhile.
Memory: two buffers of ``CHUNK`` bytes, whatever the file's size.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from wsianon.io import digests
from wsianon.io.scan import Finding, Scanner, ScanStream
from wsianon.verify.tileid import Feeder

CHUNK = 8 << 20


@dataclass
class ReadBack:
    name: str
    size: int = 0
    sha256: str = ""
    findings: list[Finding] = field(default_factory=list)


def read_back(path: Path, name: str, scanner: Scanner | None = None, feeder: Feeder | None = None, chunk: int = CHUNK) -> ReadBack:
    """Read ``path`` once; feed the canary scan, the tile identity and SHA-256 from the same buffers."""
    res = ReadBack(name)
    h = hashlib.sha256()
    stream = ScanStream(scanner, name) if scanner is not None else None
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
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
        res.size = pos
        res.sha256 = h.hexdigest()
        if os.fstat(fd).st_size == pos:
            digests.remember(fd, res.sha256)
    finally:
        os.close(fd)
    if stream is not None:
        res.findings = stream.close()
    return res
