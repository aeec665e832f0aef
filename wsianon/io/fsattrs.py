"""A file's extended attributes: names and values any program (or a person, ``setfattr -n
user.note -v Doe^Jane``) may attach to a file outside its bytes.  An output file we write is new and
carries none; a file patched in place (``--in-place``) keeps the input's, so they are removed.

Closed world: only the attributes the system itself keeps are known safe — access control lists
(``system.posix_acl_*``) and security labels (``security.*``: SELinux, capabilities, IMA).  Every
other attribute (``user.*``, ``trusted.*``, anything else) is foreign."""

from __future__ import annotations

import os
from pathlib import Path

SAFE_PREFIXES = ("system.posix_acl_", "security.")


def foreign_attributes(path: Path) -> list[str]:
    """The names of ``path``'s extended attributes that are not known safe (a file system without
    extended attributes has none)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:  # ENOTSUP: no extended attributes on this file system
        return []
    return sorted(n for n in names if not n.startswith(SAFE_PREFIXES))


def remove_foreign_attributes(path: Path) -> list[str]:
    """Remove ``path``'s foreign extended attributes; returns those that could not be removed."""
    for name in foreign_attributes(path):
        try:
            os.removexattr(path, name, follow_symlinks=False)
        except OSError:
            pass
    return foreign_attributes(path)
