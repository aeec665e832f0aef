"""The example tables of ITU T.81 Annex K, as JPEG encoders write them when a table is defined
but not used (a libjpeg ``jpeg_write_tables`` stream of an RGB page defines the chrominance
tables too).  A table no scan uses may hold any bytes (text included), so such a table is only
accepted when it is one of these known values: the Annex K Huffman tables (K.3–K.6), or an
Annex K quantization table (K.1, K.2) scaled as the IJG library scales it for a quality
setting (``jpeg_add_quant_table``: ``(value * scale + 50) // 100`` clamped to 1..255, for every
scale 1..5000, which covers qualities 1..100 and any scale between) — at most 10,000 values,
no room for text."""

from __future__ import annotations

from functools import lru_cache

# natural (row-major) order, ITU T.81 Tables K.1 and K.2
_LUMA_Q = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA_Q = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8 for _ in range(4)),
)

# Tables K.3–K.6: (class << 4) -> [(BITS, HUFFVAL)]; a table's id (low nibble) is free
_DC_VALS = bytes(range(12))
_AC_LUMA_VALS = bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f0243362728209"
    "0a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465"
    "666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9"
    "aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9ea"
    "f1f2f3f4f5f6f7f8f9fa"
)
_AC_CHROMA_VALS = bytes.fromhex(
    "0001020311040521310612415107617113223281081442"
    "91a1b1c109233352f0156272d10a162434e125f11718191a262728292a35363738393a434445"
    "464748494a535455565758595a636465666768696a737475767778797a82838485868788898a"
    "92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3"
    "d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa"
)
_HUFFMAN = {
    0x00: (
        (bytes((0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)), _DC_VALS),
        (bytes((0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0)), _DC_VALS),
    ),
    0x10: (
        (bytes((0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D)), _AC_LUMA_VALS),
        (bytes((0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77)), _AC_CHROMA_VALS),
    ),
}


def _zigzag() -> list[int]:
    """Natural-order index of each zig-zag position (the order a DQT segment lists values)."""
    order = sorted(((r, c) for r in range(8) for c in range(8)), key=lambda rc: (rc[0] + rc[1], rc[1] if (rc[0] + rc[1]) % 2 == 0 else rc[0]))
    return [r * 8 + c for r, c in order]


@lru_cache(maxsize=1)
def _quant_tables() -> frozenset[bytes]:
    zz = _zigzag()
    out: set[bytes] = set()
    for basic in (_LUMA_Q, _CHROMA_Q):
        flat = [v for row in basic for v in row]
        for scale in range(1, 5001):
            out.add(bytes(min(max((flat[i] * scale + 50) // 100, 1), 255) for i in zz))
    return frozenset(out)


def standard_table(marker_is_dqt: bool, table: bytes) -> bool:
    """Whether one table of a DQT or DHT segment (its id/class byte included) is an Annex K
    table: 8-bit quantization values in zig-zag order, or Huffman BITS + HUFFVAL of its class."""
    if not table:
        return False
    if marker_is_dqt:
        return table[0] >> 4 == 0 and len(table) == 65 and table[1:] in _quant_tables()
    cls = table[0] & 0xF0
    return any(table[1:] == bits + vals for bits, vals in _HUFFMAN.get(cls, ()))


def standard_counts(table: bytes) -> bool:
    """Whether a Huffman table (its class/id byte, 16 counts, symbols) has the code-length counts
    (BITS) of an Annex K table of its class, whatever its symbols."""
    bits = table[1:17]
    return len(bits) == 16 and any(bits == b for b, _vals in _HUFFMAN.get(table[0] & 0xF0, ()))


__all__ = ["standard_counts", "standard_table"]
