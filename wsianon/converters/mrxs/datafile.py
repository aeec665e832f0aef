"""The Data files (``DataNNNN.dat``): a header that repeats the SLIDE_ID, then blobs
that Index.dat points to (tiles of the zoom levels, NONHIER records).

Here: reading one record's blob, the text inside free-text blobs (ProfileXML, XML
headers), and the header rewrite: the header written in one form (Index.dat's version and
the keyed SLIDE_ID, whatever the source held there), the SLIDE_ID replaced wherever else it
occurs in the first ``data_header_scan_bytes``, and — when Index.dat could not be walked,
so nothing is known to be image data — everything after the header zeroed.
"""

from __future__ import annotations

import re
from pathlib import Path

from wsianon.converters.mrxs.index import NonHierRecord
from wsianon.errors import CorruptInput
from wsianon.io.plan import Patch
from wsianon.io.safetext import looks_textual


def read_blob(datafiles: list[Path], rec: NonHierRecord, limit: int = 64 << 20) -> bytes:
    """A record's bytes; empty when it has none or is larger than ``limit``."""
    if not rec.present or rec.size > limit:
        return b""
    with open(datafiles[rec.fileno], "rb") as fh:
        fh.seek(rec.offset)
        return fh.read(rec.size)


def xml_texts(blob: bytes) -> list[str]:
    """Element texts and attribute values (5 characters or more, not plain numbers) of an XML-ish blob
    (none of a binary blob: a histogram's bytes are no texts to report or scan for)."""
    if not looks_textual(blob[:4096]):
        return []
    text = blob.decode("utf-8", errors="replace")
    vals = re.findall(r">([^<>]+)<", text) + re.findall(r"=\s*\"([^\"]*)\"", text) + re.findall(r"=\s*'([^']*)'", text)
    return [v.strip() for v in vals if len(v.strip()) >= 5 and not re.fullmatch(r"[-0-9.,: ]+|utf-8|1\.0", v.strip())]


def header_patches(path: Path, old_id: str, new_id: str, header: bytes, scan_bytes: int, zero_rest: bool) -> list[Patch]:
    """The patches of one Data file: its header (the version and SLIDE_ID in front) written as
    ``header`` whatever the source held there, every other SLIDE_ID in its first ``scan_bytes``
    replaced; with ``zero_rest`` everything after the header zeroed as well (fail-closed).  A file
    shorter than its header is refused."""
    size = path.stat().st_size
    if size < len(header):
        raise CorruptInput(path, "Data file shorter than its header (version and SLIDE_ID)")
    with open(path, "rb") as fh:
        head = fh.read(min(scan_bytes, size))
    old = old_id.encode("latin-1")
    patches = [Patch(0, len(header), header, "Data file header: Index.dat's version and the keyed SLIDE_ID")]
    pos = head.find(old, len(header))
    while pos >= 0:
        patches.append(Patch(pos, len(old), new_id.encode("latin-1"), "SLIDE_ID replaced"))
        pos = head.find(old, pos + len(old))
    if zero_rest and size > len(header):
        patches.append(Patch(len(header), size - len(header), None, "data of an unreadable index zeroed (fail-closed)"))
    return patches
