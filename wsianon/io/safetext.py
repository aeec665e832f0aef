"""Console-safe text and our own error vocabulary.

Anything that came from outside the program — a path (a folder named after a
patient, a file name holding terminal escape sequences or a newline), a
library's exception message — is turned into text that is safe to print:

* control characters (C0, DEL, C1), line/paragraph separators, bidi overrides
  and undecodable bytes of a non-UTF-8 file name (``surrogateescape``) are
  shown as ``\\xNN`` / ``\\uNNNN`` escapes, so a name can neither move the
  cursor, recolour the terminal nor start a fake line of its own;
* rich console markup (``[red]``, ``[/x]``) is escaped, so the text prints
  literally through a console that interprets markup.

``safe_text`` is the one function the CLI passes every path and message through.
``os_reason`` names an ``OSError`` in the operating system's fixed vocabulary
(never ``str(exc)``, which carries the file name).  ``human_bytes`` says a size in words.
"""

from __future__ import annotations

import errno as _errno
import os
import re
import unicodedata
from pathlib import PurePath

_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")

__all__ = ["plain_text", "safe_text", "os_reason", "redact_paths", "human_bytes"]

# characters that are printable but reorder or hide text on a terminal
_INVISIBLE = {0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2028, 0x2029, 0x2060, 0xFEFF}
_INVISIBLE.update(range(0x202A, 0x202F))  # LRE RLE PDF LRO RLO
_INVISIBLE.update(range(0x2066, 0x206A))  # LRI RLI FSI PDI


def _to_str(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


def plain_text(value: object) -> str:
    """``value`` as one printable line: control and invisible characters escaped, no markup escaping."""
    s = _to_str(value)
    out: list[str] = []
    for ch in s:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # an undecodable byte of a file name (surrogateescape)
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or o == 0x7F or 0x80 <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        elif o in _INVISIBLE or 0xD800 <= o <= 0xDFFF or unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn"):
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
        elif ch == "\\":
            out.append("\\\\")
        else:
            out.append(ch)
    return "".join(out)


def safe_text(value: object) -> str:
    """Safe console text for any path or message: control characters escaped, markup-free.

    The result prints literally through a rich console with markup enabled (and
    as harmless text through anything else)."""
    s = plain_text(value)
    # the same rule as rich.markup.escape: every tag-looking "[...]" gets a
    # backslash, backslashes before it doubled
    return _TAG.sub(r"\1\1\\\2", s)


def os_reason(exc: BaseException) -> str:
    """An OSError's reason in the OS's own words (``No space left on device``), never its message."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in _errno.errorcode:
        return os.strerror(code)
    return "I/O error"


def redact_paths(text: str, paths) -> str:
    """``text`` with every spelling of the given source paths (as given and absolute, the
    file name, the path without its suffix — an MRXS slide folder —, the parent folder)
    replaced by ``<source>``: a last line of defence for report text.  Bare stems are
    left alone (``truncated.svs`` must not turn "truncated TIFF" into nonsense)."""
    needles: set[str] = set()
    for p in paths:
        if p is None:
            continue
        p = PurePath(p)
        cands = [str(p), p.name, str(p.with_suffix("")) if p.suffix else "", str(p.parent) if len(p.parts) > 2 else ""]
        cands += [os.path.abspath(c) for c in cands[:1] + cands[2:] if c]
        for cand in cands:
            if cand and len(cand) >= 3 and cand not in (".", "..", os.sep):
                needles.add(cand)
    for n in sorted(needles, key=len, reverse=True):
        text = text.replace(n, "<source>")
    return text


def human_bytes(n: float) -> str:
    """``n`` bytes in binary units, for people: ``512 B``, ``1.5 KiB`` ... ``2.1 TiB``."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} TiB"


def looks_textual(data: bytes) -> bool:
    """Whether ``data`` is mostly text: at least 80 % printable ASCII, tabs and line ends (an XML
    record in a binary container, as against a histogram's or a position buffer's bytes)."""
    if not data:
        return False
    printable = sum(1 for b in data if 0x20 <= b < 0x7F or b in (9, 10, 13))
    return printable >= 0.8 * len(data)
