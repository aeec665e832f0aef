"""A file's extended attributes: names and values any program (or a person, ``setfattr -n
user.note -v Doe^Jane``) may attach to a file outside its bytes.  An output file we write is new and
carries none; a file patched in place (``--in-place``) keeps the input's, so they are removed.

Closed world, by name AND value: only the attributes a system itself puts on an ordinary data file
are known safe, each in its one form —

- ``system.posix_acl_access`` / ``system.posix_acl_default``: an access control list in the
  kernel's binary form (version 2, entries of tag, permission bits and a user or group id);
- ``security.selinux``: an SELinux label, ``user:object_r:type[:level]`` (identifiers of
  ``[a-z0-9_]``; a file's role is always ``object_r``; an MLS level ``s0``, ``s0-s15:c0.c1023``).

Every other attribute (``user.*``, ``trusted.*``, any other ``security.*`` name: red team B, F3
found ``security.patient = Doe^Jane MRN ...`` kept by an in-place run and judged safe, when the rule
was the whole ``security.`` namespace), and a known name whose value is not in its form (free text as
``security.selinux``), is foreign.  ``security.capability`` (file capabilities: executables set by
``setcap``) and ``security.ima``/``security.evm`` (a hash of the content as it was: stale once the
file is patched) are foreign too."""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

ACL_NAMES = ("system.posix_acl_access", "system.posix_acl_default")
SELINUX = "security.selinux"

# the kernel's ACL entry tags: USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER
_ACL_TAGS = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20}
_ACL_NAMED = {0x02, 0x08}  # entries naming a user or group id; the others carry no id
_ACL_UNDEFINED_ID = 0xFFFFFFFF
_ACL_VERSION = 2

_IDENT = r"[a-z][a-z0-9_]{0,63}"
_LEVEL = r"s[0-9]{1,4}(?::c[0-9]{1,4}(?:[.,]c[0-9]{1,4})*)?"
_SELINUX_FORM = re.compile(rf"{_IDENT}:object_r:{_IDENT}(?::{_LEVEL}(?:-{_LEVEL})?)?\x00?".encode())


def acl_in_form(value: bytes) -> bool:
    """A POSIX ACL in the kernel's binary form: a version-2 header, then 8-byte entries (tag,
    permission bits 0-7, id), each tag known, an id only on named entries."""
    if len(value) < 4 or (len(value) - 4) % 8 or struct.unpack_from("<I", value)[0] != _ACL_VERSION:
        return False
    for tag, perm, ident in struct.iter_unpack("<HHI", value[4:]):
        if tag not in _ACL_TAGS or perm > 7 or (tag not in _ACL_NAMED and ident != _ACL_UNDEFINED_ID):
            return False
    return True


def selinux_in_form(value: bytes) -> bool:
    """An SELinux file label in its one form (see the module)."""
    return len(value) <= 255 and _SELINUX_FORM.fullmatch(value) is not None


def known_safe(name: str, value: bytes) -> bool:
    """Whether the attribute ``name`` = ``value`` is one a system keeps, in its form."""
    if name in ACL_NAMES:
        return acl_in_form(value)
    if name == SELINUX:
        return selinux_in_form(value)
    return False


def foreign_attributes(path: Path) -> list[str]:
    """The names of ``path``'s extended attributes that are not known safe (a file system without
    extended attributes has none; an attribute whose value cannot be read is foreign)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:  # ENOTSUP: no extended attributes on this file system
        return []
    out = []
    for n in names:
        try:
            ok = known_safe(n, os.getxattr(path, n, follow_symlinks=False))
        except OSError:
            ok = False
        if not ok:
            out.append(n)
    return sorted(out)


def remove_foreign_attributes(path: Path) -> list[str]:
    """Remove ``path``'s foreign extended attributes; returns those that could not be removed."""
    for name in foreign_attributes(path):
        try:
            os.removexattr(path, name, follow_symlinks=False)
        except OSError:
            pass
    return foreign_attributes(path)
