"""Input selection at archive scale: the user's inputs, ``--from-file LIST``,
``--include``/``--exclude`` globs, walked into candidate files.

Every candidate carries its *relative path*: the path below the input root given
on the command line, prefixed with that root's own name (``archive/2020/a.svs``
for ``wsianon run /mnt/x/archive``); a file given directly is its name.  This is
what ``--pseudonym-from relpath`` hashes and what the console shows, so moving
the archive keeps both.  Only regular files are candidates (a FIFO or a device
is listed as skipped, never opened).
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from wsianon.io.safetext import os_reason
from wsianon.pipeline.detect import SKIP_NAMES, as_slide_input
from wsianon.errors import WsianonError


@dataclass
class Candidate:
    path: Path  # as found (absolute)
    relpath: bytes  # root name / path below the root (bytes: any file name works)
    explicit: bool  # named on the command line (or in --from-file), not found by walking
    shown: bytes = b""  # what the console shows: the path as the user gave it (+ the part below a folder)
    root: int = -1  # index of the input it came from


@dataclass
class Selection:
    candidates: list[Candidate]
    missing: list[Path]  # inputs that do not exist
    not_regular: list[Candidate]  # FIFOs, devices, sockets found among the inputs
    folders: list[tuple[int, Path]] = field(default_factory=list)  # (input index, folder) of every folder input


def display(relpath: bytes) -> str:
    """A relative path as text for the user's console (undecodable bytes kept as surrogates):
    whatever prints it passes it through ``safe_text``, the one place that escapes."""
    return relpath.decode("utf-8", "surrogateescape")


def _matches(patterns: list[str], rel: str) -> bool:
    # the name, the relative path, and the relative path below the root's own name
    forms = {rel.rsplit("/", 1)[-1], rel, rel.split("/", 1)[-1]}
    return any(fnmatch.fnmatchcase(f, p) for f in forms for p in patterns)


def _is_regular(p: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(p).st_mode)
    except OSError:
        return False


def _identity(p: Path) -> tuple[int, int] | bytes:
    """The file a path names (device, inode), or the path itself when it cannot be read."""
    try:
        st = os.stat(p)
    except OSError:
        return os.fsencode(p)
    return (st.st_dev, st.st_ino)


def _walk(root: Path, prefix: bytes, sel: Selection, include: list[str], exclude: list[str], prune: list[Path], shown: bytes, idx: int) -> None:
    stack = [(root, prefix, shown)]
    while stack:
        d, pre, shw = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: os.fsencode(e.name))
        except OSError:
            continue
        names = {e.name for e in entries}
        subdirs = []
        for e in entries:
            name = e.name
            rel = pre + b"/" + os.fsencode(name)
            shw_e = shw + b"/" + os.fsencode(name)
            if name.startswith("."):
                continue  # hidden files, our staging folders
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                p = Path(e.path)
                if f"{name}.mrxs" in names or any(p == q for q in prune):
                    continue  # an MRXS slide folder belongs to NAME.mrxs; OUT is never an input
                subdirs.append((p, rel, shw_e))
                continue
            if name in SKIP_NAMES or name.endswith(".wsianon-journal"):
                continue
            rel_s = os.fsdecode(rel)
            if (include and not _matches(include, rel_s)) or (exclude and _matches(exclude, rel_s)):
                continue
            c = Candidate(Path(e.path), rel, False, shw_e, idx)
            (sel.candidates if _is_regular(c.path) else sel.not_regular).append(c)
        stack.extend(reversed(subdirs))


def _root_name(p: Path) -> bytes:
    return os.fsencode(p.name or Path(os.path.abspath(p)).name)


def select_inputs(
    inputs: list[Path],
    *,
    from_file: Path | None = None,
    input_root: Path | None = None,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    prune: list[Path] | None = None,
) -> Selection:
    include = list(include or [])
    exclude = list(exclude or [])
    prune = [Path(os.path.abspath(p)) for p in (prune or [])]
    sel = Selection([], [], [])
    items: list[tuple[Path, bytes | None]] = [(Path(p), None) for p in inputs]
    if from_file is not None:
        items.extend(_read_list(Path(from_file), input_root))
    seen: set[tuple[int, int] | bytes] = set()
    for idx, (p, rel) in enumerate(items):
        p = as_slide_input(p)
        if rel is not None and p.suffix == ".mrxs" and not rel.endswith(b".mrxs"):
            rel = os.fsencode(os.path.join(os.path.dirname(os.fsdecode(rel)), p.name))
        ap = Path(os.path.abspath(p))
        if not os.path.lexists(ap):
            sel.missing.append(p)
            continue
        if ap.is_dir():
            sel.folders.append((idx, p))
            _walk(ap, rel if rel is not None else _root_name(ap), sel, include, exclude, prune, os.fsencode(p).rstrip(b"/") or b"/", idx)
            continue
        r = rel if rel is not None else os.fsencode(ap.name)
        if (include or exclude) and p not in inputs:
            rs = os.fsdecode(r)
            if (include and not _matches(include, rs)) or (exclude and _matches(exclude, rs)):
                continue
        c = Candidate(ap, r, True, os.fsencode(p), idx)
        (sel.candidates if _is_regular(ap) else sel.not_regular).append(c)
    # one candidate per file (an input named twice, a list with duplicates, a symbolic or hard
    # link to a file named already): the first one named wins, the slide is processed once
    out = []
    for c in sel.candidates:
        k = _identity(c.path)
        if k not in seen:
            seen.add(k)
            out.append(c)
    sel.candidates = out
    return sel


def _read_list(path: Path, input_root: Path | None) -> list[tuple[Path, bytes | None]]:
    """``--from-file``: one path per line (bytes as they are; blank lines and #comments ignored).
    Relative lines are relative to the list's folder; the relative path used for
    pseudonyms is taken below ``input_root`` (default: the list's folder)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WsianonError(path, f"cannot read the input list: {os_reason(exc)}") from None
    base = Path(os.path.abspath(path.parent))
    root = Path(os.path.abspath(input_root)) if input_root else base
    out: list[tuple[Path, bytes | None]] = []
    for line in data.splitlines():
        line = line.rstrip(b"\r")
        if not line.strip() or line.lstrip().startswith(b"#"):
            continue
        p = Path(os.fsdecode(line))
        ap = p if p.is_absolute() else base / p
        ap = Path(os.path.normpath(ap))
        try:
            rel = os.fsencode(ap.relative_to(root))
        except ValueError:
            rel = os.fsencode(ap.name)
        out.append((ap, rel))
    return out
