"""Verification of what a file carries outside its bytes: extended attributes other than those the
system keeps, each in its one form (``wsianon.io.fsattrs``: ACLs in the kernel's binary form, an
SELinux label), fail the check.  Their names are not shown (a name is text
anyone chose: ``user.Doe_Jane``)."""

from __future__ import annotations

from pathlib import Path

from wsianon.io.fsattrs import foreign_attributes

CHECK = "closed-world: file attributes"


def add_check(verdict, files: list[Path]) -> bool:
    """Add the check over ``files`` to ``verdict``; returns whether it passed."""
    bad = sum(1 for f in dict.fromkeys(Path(p) for p in files) if foreign_attributes(f))
    detail = (
        f"{bad} file(s) carry extended attributes that are not known safe (only ACLs and SELinux labels in their own forms are; names not shown)"
        if bad
        else "no extended attribute beyond ACLs and SELinux labels in their own forms"
    )
    verdict.add(CHECK, not bad, detail)
    return not bad
