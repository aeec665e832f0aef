"""Keyed derivation: every value wsianon derives from the project key, in one place.

All derivations are HMAC-SHA256 with the project key, so nothing here can be recomputed
without the key and the same key always gives the same value.  Each purpose has its own
domain (the first part of the HMAC message), so two purposes never share a value:

==================  ==========================================  =============================
purpose             message                                     function
==================  ==========================================  =============================
slide pseudonyms    ``"slide-relpath" 0x1F relpath`` (also      :func:`keyed_hex` (used by
                    ``slide-content``, ``slide`` = abs. path,   ``pipeline/keys.py``)
                    ``skipped`` for skipped inputs)
UIDs                ``"uid" 0x00 old-uid``                      :func:`keyed_uid`
other UID roles     ``"study"``, ``"convert"``, ``"dummy"``     :func:`keyed_uid` with a label
tokens              ``label 0x00 value`` (``patient``)          :func:`keyed_token`
date shift          ``"dateshift" 0x00 patient``                :func:`date_offset_days`
same-length ids     chained: ``domain ":" old`` then the        :func:`same_length_hex`
                    previous digest (MRXS SLIDE_ID)
==================  ==========================================  =============================

The messages are the ones earlier versions used, so pseudonyms, patient tokens, date shifts and
MRXS SLIDE_IDs stay stable across versions (archive jobs resume; mappings must not change —
``tests/test_keyed.py`` pins them).  One exception, on purpose: Philips TIFF and iSyntax native
outputs used to derive UIDs with a second, differently separated function; they now use
:func:`keyed_uid`, so one source UID maps to the same new UID on the native and the DICOM route.
"""

from __future__ import annotations

import hashlib
import hmac
import os


def _b(part: str | bytes) -> bytes:
    # bytes throughout: a file name that is not valid UTF-8 is hashed as it is
    return part if isinstance(part, bytes) else os.fsencode(part)


def keyed_hex(key: bytes, *parts: str | bytes, n: int = 16) -> str:
    """Lower-case hex of HMAC(key, parts joined by 0x1F); the first part names the domain."""
    msg = b"\x1f".join(_b(p) for p in parts)
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:n]


def mac(key: bytes, label: str, value: str) -> bytes:
    """HMAC(key, ``label`` 0x00 ``value``): the labelled derivation behind UIDs, tokens and shifts."""
    return hmac.new(key, f"{label}\0{value}".encode("utf-8", "surrogateescape"), hashlib.sha256).digest()


def keyed_uid(key: bytes, old: str, label: str = "uid") -> str:
    """``2.25.<int>`` from the first 128 bits of the labelled MAC of ``old``; at most 44 characters."""
    return "2.25." + str(int.from_bytes(mac(key, label, old.strip().rstrip("\0"))[:16], "big"))


def keyed_token(key: bytes, label: str, value: str, length: int = 16) -> str:
    """An upper-case hex pseudonym for ``value`` (e.g. a source PatientID)."""
    return mac(key, label, value).hex()[:length].upper()


def date_offset_days(key: bytes, patient_key: str) -> int:
    """A keyed shift in [-3650, -1] days, the same for every slide of one patient."""
    n = int.from_bytes(mac(key, "dateshift", patient_key)[:8], "big")
    return -(1 + n % 3650)


def same_length_hex(key: bytes, domain: str, old: str) -> str:
    """Upper-case hex of exactly ``len(old)`` characters, never equal to ``old`` (identifiers whose
    length fixes offsets elsewhere in the file, e.g. the MRXS SLIDE_ID)."""
    out = ""
    block = f"{domain}:".encode() + old.encode("latin-1")
    while len(out) < len(old):
        block = hmac.new(key, block, hashlib.sha256).digest()
        out += block.hex().upper()
    new = out[: len(old)]
    if new == old:  # astronomically unlikely; never keep the old identifier
        new = new[::-1]
    return new
