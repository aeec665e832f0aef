"""ICC profiles, closed world: keep what a colour transform needs, zero every text.

An ICC profile is a 128-byte header, a tag table (count, then signature /
offset / size per tag) and tag data, each element starting with a 4-byte type
signature.  :func:`sanitize` returns a profile of the same length in which

* tags of a colorimetric type (``SAFE_TYPES``: curves, matrices, LUTs, XYZ
  values, measurement and viewing conditions, signatures) keep their bytes;
* every other tag (text: 'desc', 'text', 'mluc', date 'dtim', named colours,
  colorant names, private and unknown types) keeps its type signature and its
  payload is zeroed (an empty text of the same type);
* the header's creation date and profile ID are zeroed (the ID is an MD5 of
  the content; zero means "not computed");
* every byte no tag references is zeroed.

Colour transforms are unchanged (no colorimetric byte moves); only the names
a viewer might show become empty.  No vendor semantics here.
"""

from __future__ import annotations

import struct

SAFE_TYPES = frozenset(
    {
        b"XYZ ",
        b"curv",
        b"para",
        b"mft1",
        b"mft2",
        b"mAB ",
        b"mBA ",
        b"sf32",
        b"sig ",
        b"meas",
        b"view",
        b"chrm",
        b"mpet",
        b"ui08",
        b"ui16",
        b"ui32",
        b"ui64",
        b"uf32",
        b"s15f",
        b"u16f",
    }
)
HEADER = 128
_DATE = (24, 36)
_ID = (84, 100)
MAX_TAGS = 1024


def parse(data: bytes) -> list[tuple[bytes, int, int]] | None:
    """(signature, offset, size) per tag, or None when ``data`` is not a plausible ICC profile."""
    if len(data) < HEADER + 4 or data[36:40] != b"acsp":
        return None
    (n,) = struct.unpack(">I", data[HEADER : HEADER + 4])
    if n > MAX_TAGS or HEADER + 4 + 12 * n > len(data):
        return None
    tags = []
    for i in range(n):
        sig, off, size = struct.unpack(">4sII", data[HEADER + 4 + 12 * i : HEADER + 16 + 12 * i])
        if off < HEADER + 4 + 12 * n or off + size > len(data) or size < 8:
            return None
        tags.append((sig, off, size))
    return tags


def sanitize(data: bytes) -> tuple[bytes, int]:
    """(sanitized profile of the same length, number of tags whose payload was zeroed).

    A profile that does not parse is zeroed entirely (returned length unchanged)."""
    tags = parse(data)
    if tags is None:
        return bytes(len(data)), 1
    out = bytearray(len(data))
    out[:HEADER] = data[:HEADER]
    out[_DATE[0] : _DATE[1]] = bytes(_DATE[1] - _DATE[0])
    out[_ID[0] : _ID[1]] = bytes(_ID[1] - _ID[0])
    table_end = HEADER + 4 + 12 * len(tags)
    out[HEADER:table_end] = data[HEADER:table_end]
    emptied = 0
    done: set[tuple[int, int]] = set()
    for _sig, off, size in sorted(tags, key=lambda t: t[1]):
        if (off, size) in done:
            continue  # tags may share their data
        done.add((off, size))
        typ = data[off : off + 4]
        if typ in SAFE_TYPES:
            out[off : off + size] = data[off : off + size]
            continue
        out[off : off + 4] = typ
        if typ == b"mluc" and size >= 16:
            out[off + 12 : off + 16] = struct.pack(">I", 12)  # zero records of the standard size
        if data[off + 8 : off + size].strip(b"\0"):
            emptied += 1
    return bytes(out), emptied
