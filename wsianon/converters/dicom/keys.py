"""Keyed derivations: UIDs, pseudonyms and date offsets (HMAC-SHA256 with the project key).

Nothing here can be recomputed without the key; the same key always gives the same value.
"""

from __future__ import annotations

import hashlib
import hmac

# UIDs of the DICOM registry (SOP classes, transfer syntaxes, coding schemes ...) identify no one
REGISTRY_ROOT = "1.2.840.10008."


def _mac(key: bytes, label: str, value: str) -> bytes:
    return hmac.new(key, f"{label}\0{value}".encode("utf-8", "surrogateescape"), hashlib.sha256).digest()


def keyed_uid(key: bytes, old: str, label: str = "uid") -> str:
    """``2.25.<int>`` from the first 128 bits of HMAC-SHA256(key, old UID); at most 44 characters."""
    return "2.25." + str(int.from_bytes(_mac(key, label, old.strip().rstrip("\0"))[:16], "big"))


def remap_uid(key: bytes, old: str) -> str:
    old = str(old).strip().rstrip("\0")
    if not old or old.startswith(REGISTRY_ROOT):
        return old
    return keyed_uid(key, old)


def keyed_token(key: bytes, label: str, value: str, length: int = 16) -> str:
    """An upper-case hex pseudonym for ``value`` (e.g. a source PatientID)."""
    return _mac(key, label, value).hex()[:length].upper()


def date_offset_days(key: bytes, patient_key: str) -> int:
    """A keyed shift in [-3650, -1] days, the same for every slide of one patient."""
    n = int.from_bytes(_mac(key, "dateshift", patient_key)[:8], "big")
    return -(1 + n % 3650)
