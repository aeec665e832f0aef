"""Output folders are shared whole: no private file of any job goes into one.

A wsianon output folder (OUT) is recognised by its record: ``wsianon-report.json`` or
``wsianon-certificate.json`` in it.  A job's private files — the mapping (source paths), the
review sheet (label photos), the manifest, the log, the quarantine — are refused inside THIS run's
OUT (batch.check_locations) and inside ANY folder that already is a wsianon OUT, found by looking
at the folders above the path: a second job whose ``-o`` sits inside an earlier job's OUT would
put its private files beside its own OUT, i.e. into the earlier, certified one.  An OUT inside
another wsianon OUT is refused for the same reason (and its outputs would be files the outer
record does not list).  Nothing is written before these checks.
"""

from __future__ import annotations

import os
from pathlib import Path

from wsianon.errors import WsianonError
from wsianon.pipeline.record import CERT_JSON
from wsianon.pipeline.report import REPORT_NAME

RECORD_NAMES = (REPORT_NAME, CERT_JSON)


def is_wsianon_out(folder: Path) -> bool:
    """The folder holds a wsianon record (it is, or was, a job's shareable OUT)."""
    return any(os.path.isfile(os.path.join(folder, n)) for n in RECORD_NAMES)


def inside(child, parent) -> bool:
    """``child`` is ``parent`` or lies in it, links resolved (also batch's locations checks)."""
    c, p = os.path.realpath(child), os.path.realpath(parent)
    return c == p or c.startswith(p.rstrip(os.sep) + os.sep)


def enclosing_out(path: Path, own: Path | None = None, include_self: bool = True) -> Path | None:
    """The wsianon OUT that ``path`` lies in (``path`` itself when ``include_self`` and it is a
    folder, else one of the folders above it), other than ``own`` (this run's OUT, judged by the
    caller), or None."""
    real = os.path.realpath(path)
    own_real = os.path.realpath(own) if own is not None else None
    cands = [real] if include_self else []
    p = os.path.dirname(real)
    while True:
        cands.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for c in cands:
        if own_real is not None and inside(c, own_real):
            continue  # this run's own OUT (refused by the caller's own check) or a folder in it
        if os.path.isdir(c) and is_wsianon_out(Path(c)):
            return Path(c)
    return None


def refuse_out_in_shared(out: Path) -> None:
    """This run's OUT must not lie inside another job's OUT."""
    if enclosing_out(out, include_self=False) is not None:
        raise WsianonError(
            out,
            "the output folder lies inside another wsianon output folder (shared whole, with its own record); choose an OUT outside every other job's OUT",
        )


def refuse_private_in_shared(private: list[tuple[str, Path | None]], own: Path | None = None) -> None:
    """No private file (``(what, path)`` pairs) inside any wsianon OUT other than ``own`` (this
    run's OUT, which the caller refuses with its own message)."""
    for what, p in private:
        if p is None:
            continue
        if enclosing_out(Path(p), own=own, include_self=False) is not None:
            raise WsianonError(
                p,
                f"{what} is private and would be written inside a wsianon output folder (shared whole); choose a path outside every OUT",
            )
