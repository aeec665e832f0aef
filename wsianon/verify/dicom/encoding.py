"""The encoding of a DICOM header, walked byte by byte (PS3.5 7): bytes no reader shows hold nothing.

pydicom reads a value by its element's tag and length and passes over what carries none: the two
reserved bytes of an explicit VR header with a 4-byte length (PS3.5 7.1.2: 0000H), the length of
an Item or Sequence Delimitation Item (PS3.5 7.5: 00000000H), and of an element repeated in one
data set it keeps only the last (the earlier value is in the file, unseen by every check that
walks the parsed data set). Each of them could carry a few bytes of text beside a clean-looking
data set. This walk proves, from the file alone, that the File Meta Information and the data set
up to Pixel Data are elements in ascending tag order, each once, sequences only of items, every
reserved byte and delimiter length zero, and nothing between or around them.

Every public element of the dictionary must be written with a VR the dictionary gives it (or UN,
which a reader resolves to the dictionary's): a value written as another VR is read, and judged by
every check, as that VR's (red team stop 38: ManufacturerModelName as FD, a name's 8 bytes judged
as a number; ``profiles.dicom.vr_allowed``).

Pixel Data's own header, items and what follows it are judged by ``dicom_attrs._data_set_end``.
Imports only pydicom's dictionary (through ``profiles.dicom``).
"""

from __future__ import annotations

import struct

from wsianon.io.dicomframes import LONG_VRS
from wsianon.profiles.dicom import vr_allowed

UNDEFINED = 0xFFFFFFFF
SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
IMPLICIT_LE, EXPLICIT_LE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
NOT_WALKED = {"1.2.840.10008.1.2.1.99": "deflated", "1.2.840.10008.1.2.2": "big-endian"}
MAX_DEPTH = 64  # sequences nested deeper than any IOD nests them


class _Bad(Exception):
    pass


def _implicit_sq(tag: int) -> bool:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


def _keyword(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    return keyword_for_tag(tag) or "an attribute"


class _Walk:
    def __init__(self, buf: bytes, explicit: bool):
        self.buf = buf
        self.explicit = explicit

    def _u32(self, pos: int) -> int:
        return struct.unpack_from("<I", self.buf, pos)[0]

    def data_set(self, pos: int, end: int, depth: int, delimited: bool, top: bool = False) -> int:
        """Walk elements from ``pos``; returns where the data set ends (after its Item
        Delimitation Item when ``delimited``; at Pixel Data or ``end`` at the top level)."""
        last = -1
        explicit = self.explicit
        while pos < end:
            if pos + 8 > end:
                raise _Bad("an element header runs past its data set")
            group, element = struct.unpack_from("<HH", self.buf, pos)
            tag = group << 16 | element
            if tag == ITEM_END:
                if not delimited:
                    raise _Bad("an Item Delimitation Item in an item of defined length")
                if self._u32(pos + 4):
                    raise _Bad("an Item Delimitation Item with a non-zero length")
                return pos + 8
            if group == 0xFFFE:
                raise _Bad("an item or delimiter outside a sequence")
            if tag <= last:
                raise _Bad("elements out of ascending tag order, or one repeated")
            last = tag
            if top and tag == PIXEL_DATA:
                return pos
            vr: bytes | None = None
            if explicit:
                vr = self.buf[pos + 4 : pos + 6]
                if vr in LONG_VRS:
                    if pos + 12 > end:
                        raise _Bad("an element header runs past its data set")
                    if self.buf[pos + 6 : pos + 8] != b"\0\0":
                        raise _Bad("the reserved bytes of an element header are not zero")
                    length, pos = self._u32(pos + 8), pos + 12
                elif vr in SHORT_VRS:
                    length, pos = struct.unpack_from("<H", self.buf, pos + 6)[0], pos + 8
                else:
                    raise _Bad("an element with no VR of the standard")
                if not vr_allowed(tag, vr.decode("ascii")):
                    raise _Bad(f"({group:04X},{element:04X}) {_keyword(tag)} written with a VR its dictionary entry does not give it")
            else:
                length, pos = self._u32(pos + 4), pos + 8
            if vr == b"SQ" or (vr is None and (length == UNDEFINED or _implicit_sq(tag))) or (vr == b"UN" and length == UNDEFINED):
                if depth >= MAX_DEPTH:
                    raise _Bad("sequences nested deeper than any IOD nests them")
                # PS3.5 6.2.2: a UN of undefined length is a sequence in Implicit VR Little Endian
                self.explicit = explicit and vr != b"UN"
                try:
                    pos = self.sequence(pos, length, end, depth + 1)
                finally:
                    self.explicit = explicit
            elif length == UNDEFINED:
                raise _Bad("an undefined length on a value that is not a sequence")
            else:
                pos += length
                if pos > end:
                    raise _Bad("a value runs past its data set")
        if delimited:
            raise _Bad("an item without its Item Delimitation Item")
        if pos != end:
            raise _Bad("a value runs past its data set")
        return pos

    def sequence(self, pos: int, length: int, end: int, depth: int) -> int:
        stop = end if length == UNDEFINED else pos + length
        if stop > end:
            raise _Bad("a sequence runs past its data set")
        while pos < stop:
            if pos + 8 > stop:
                raise _Bad("an item header runs past its sequence")
            tag = struct.unpack_from("<HH", self.buf, pos)
            tag_v = tag[0] << 16 | tag[1]
            item_len = self._u32(pos + 4)
            if tag_v == SEQUENCE_END:
                if length != UNDEFINED:
                    raise _Bad("a Sequence Delimitation Item in a sequence of defined length")
                if item_len:
                    raise _Bad("a Sequence Delimitation Item with a non-zero length")
                return pos + 8
            if tag_v != ITEM:
                raise _Bad("a sequence holding something other than items")
            pos += 8
            if item_len == UNDEFINED:
                pos = self.data_set(pos, stop, depth, delimited=True)
            else:
                if pos + item_len > stop:
                    raise _Bad("an item runs past its sequence")
                pos = self.data_set(pos, pos + item_len, depth, delimited=False)
        if length == UNDEFINED:
            raise _Bad("a sequence without its Sequence Delimitation Item")
        return pos


def header_problem(head: bytes) -> str | None:
    """Why the file's bytes before Pixel Data (``head``: from the file's start to Pixel Data's
    tag, or the whole file when it has none) are not exactly well-formed elements, or None."""
    if len(head) < 132 or head[128:132] != b"DICM":
        return "no DICM prefix after the preamble"
    try:
        # File Meta Information: group 0002, Explicit VR Little Endian (PS3.10 7.1)
        pos = meta_end = 132
        while meta_end + 8 <= len(head) and struct.unpack_from("<H", head, meta_end)[0] == 0x0002:
            if head[meta_end + 4 : meta_end + 6] in LONG_VRS:
                meta_end += 12 + (struct.unpack_from("<I", head, meta_end + 8)[0] if meta_end + 12 <= len(head) else len(head))
            else:
                meta_end += 8 + struct.unpack_from("<H", head, meta_end + 6)[0]
        if meta_end > len(head):
            raise _Bad("the File Meta Information runs past the file")
        _Walk(head, True).data_set(pos, meta_end, 0, delimited=False)
        ts = _transfer_syntax(head, pos, meta_end)
        if ts in NOT_WALKED:
            return f"a {NOT_WALKED[ts]} transfer syntax (its encoding is not walked)"
        _Walk(head, ts != IMPLICIT_LE).data_set(meta_end, len(head), 0, delimited=False, top=True)
    except _Bad as exc:
        return str(exc)
    except struct.error:
        return "an element header runs past the file"
    return None


def _transfer_syntax(head: bytes, pos: int, end: int) -> str:
    while pos < end:
        group, element = struct.unpack_from("<HH", head, pos)
        vr = head[pos + 4 : pos + 6]
        if vr in LONG_VRS:
            n, hdr = struct.unpack_from("<I", head, pos + 8)[0], 12
        else:
            n, hdr = struct.unpack_from("<H", head, pos + 6)[0], 8
        if (group, element) == (0x0002, 0x0010):
            return head[pos + hdr : pos + hdr + n].rstrip(b"\0 ").decode("ascii", "replace")
        pos += hdr + n
    return ""
