"""The in-place journal: enough to undo a patch, and proof that it belongs to the file.

``apply_in_place`` writes a journal beside the target before the first byte is
patched.  It carries

* the target's identity: file name, device and inode, size before (and after)
  patching;
* every patched region's offset, original bytes (base64), and the SHA-256 of
  its original and of its new bytes;
* a SHA-256 over all of the above, so a truncated or edited journal is detected.

Before ``rollback`` writes a single byte it checks all of it: the journal is
intact, the file is the same inode on the same device, its size is the size
before or after patching, and every region holds either its original or its
new bytes.  Anything else is refused with a one-line reason and the file is not
touched; ``wsianon rollback --discard FILE`` removes such a journal (after you
have checked the file) so that ``run --in-place`` can start again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from wsianon.errors import WsianonError
from wsianon.io.safetext import os_reason

FORMAT = "wsianon-journal"
VERSION = 2
MAX_JOURNAL = 64 * 1024 * 1024
DISCARD_HINT = "check the file, then 'wsianon rollback --discard FILE' removes the journal"


class JournalError(WsianonError):
    """A journal that cannot be trusted (damaged, foreign, or the file changed since)."""


def journal_path(target: Path) -> Path:
    return Path(target).with_name(Path(target).name + ".wsianon-journal")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _seal(body: dict) -> str:
    return _sha(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def build(fd: int, target: Path, regions: list[tuple[int, bytes]], append: bytes) -> dict:
    """The journal for patching ``fd`` (open on ``target``): ``regions`` are (offset, new bytes)."""
    st = os.fstat(fd)
    items = []
    for offset, new in regions:
        old = os.pread(fd, len(new), offset)
        if len(old) != len(new):
            raise WsianonError(target, "a patch reaches beyond the end of the file")
        items.append({"offset": offset, "old": base64.b64encode(old).decode(), "old_sha256": _sha(old), "new_sha256": _sha(new)})
    body = {
        "format": FORMAT,
        "version": VERSION,
        "name": target.name,
        "dev": st.st_dev,
        "ino": st.st_ino,
        "size": st.st_size,
        "patched_size": st.st_size + len(append),
        "append_sha256": _sha(append),
        "regions": items,
    }
    return {**body, "seal": _seal(body)}


def _remove_stale_temps(jpath: Path) -> None:
    """Temporary journals a killed run left beside the slide (their writer is gone): never a
    journal themselves (they were not linked into place), so they are removed."""
    prefix = f".{jpath.name}.tmp-"
    try:
        names = [n for n in os.listdir(jpath.parent) if n.startswith(prefix)]
    except OSError:
        return
    for n in names:
        pid_text = n[len(prefix) :]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        alive = pid != os.getpid()
        if alive:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive = False
            except PermissionError:
                pass  # another user's live process
        if not alive:
            try:
                os.unlink(jpath.parent / n)
            except OSError:
                pass


def write(jpath: Path, journal: dict) -> None:
    """Write the journal durably (mode 0600, exclusive create, fsync of file and folder)."""
    data = json.dumps(journal).encode()
    _remove_stale_temps(jpath)
    tmp = jpath.with_name(f".{jpath.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.link(tmp, jpath)  # never replaces an existing journal
    finally:
        os.unlink(tmp)
    dfd = os.open(jpath.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _damaged(target: Path, why: str) -> JournalError:
    return JournalError(target, f"journal is damaged ({why}); nothing was changed; {DISCARD_HINT}")


def load(target: Path) -> dict:
    """Read and check a journal's integrity (not yet against the file)."""
    jpath = journal_path(target)
    try:
        with open(jpath, "rb") as fh:
            raw = fh.read(MAX_JOURNAL + 1)
    except OSError as exc:
        raise JournalError(target, f"cannot read its journal: {os_reason(exc)}") from None
    if not raw.strip():
        raise _damaged(target, "empty")
    if len(raw) > MAX_JOURNAL:
        raise _damaged(target, "implausibly large")
    try:
        j = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _damaged(target, "not valid JSON: truncated or edited") from None
    if not isinstance(j, dict) or j.get("format") != FORMAT:
        raise _damaged(target, "not a wsianon journal, or one written by an older version without the file's identity")
    if j.get("version") != VERSION:
        raise _damaged(target, f"unknown journal version {j.get('version')!r}"[:80])
    seal = j.pop("seal", None)
    if seal != _seal(j):
        raise _damaged(target, "checksum mismatch: truncated or edited")
    ints = ("dev", "ino", "size", "patched_size")
    if not all(isinstance(j.get(k), int) and j[k] >= 0 for k in ints) or not isinstance(j.get("regions"), list):
        raise _damaged(target, "missing fields")
    for r in j["regions"]:
        if not (
            isinstance(r, dict)
            and isinstance(r.get("offset"), int)
            and r["offset"] >= 0
            and all(isinstance(r.get(k), str) for k in ("old", "old_sha256", "new_sha256"))
        ):
            raise _damaged(target, "bad region entry")
        try:
            r["old_bytes"] = base64.b64decode(r["old"], validate=True)
        except ValueError:
            raise _damaged(target, "bad region entry") from None
        if _sha(r["old_bytes"]) != r.get("old_sha256") or r["offset"] + len(r["old_bytes"]) > j["size"]:
            raise _damaged(target, "region does not match its own checksum")
    return j


def check_against(fd: int, target: Path, j: dict) -> None:
    """Refuse unless ``fd`` is the journaled file, in its original or patched state, region by region."""
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (j["dev"], j["ino"]):
        raise JournalError(target, f"journal belongs to another file (device/inode differ); nothing was changed; {DISCARD_HINT}")
    if st.st_size not in (j["size"], j["patched_size"]):
        raise JournalError(
            target,
            f"file size {st.st_size} is neither the journaled {j['size']} nor {j['patched_size']}: it changed since; nothing was changed; {DISCARD_HINT}",
        )
    for r in j["regions"]:
        cur = os.pread(fd, len(r["old_bytes"]), r["offset"])
        h = _sha(cur)
        if h not in (r["old_sha256"], r["new_sha256"]):
            raise JournalError(
                target,
                f"bytes at offset {r['offset']} are neither the original nor the patched ones: the file changed since; nothing was changed; {DISCARD_HINT}",
            )


def rollback(target: Path) -> bool:
    """Restore ``target`` from its journal after verifying it; False when there is none."""
    target = Path(target)
    jpath = journal_path(target)
    if not jpath.exists():
        return False
    j = load(target)
    try:
        fd = os.open(target, os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise JournalError(target, f"cannot open for rollback: {os_reason(exc)}; nothing was changed") from None
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise JournalError(target, "is not a regular file; nothing was changed")
        check_against(fd, target, j)
        for r in j["regions"]:
            os.pwrite(fd, r["old_bytes"], r["offset"])
        os.ftruncate(fd, j["size"])
        os.fsync(fd)
    except OSError as exc:
        raise JournalError(target, f"rollback write failed: {os_reason(exc)}; the journal is kept") from None
    finally:
        os.close(fd)
    jpath.unlink()
    return True


def discard(target: Path) -> bool:
    """Remove ``target``'s journal without touching the file; False when there is none."""
    jpath = journal_path(Path(target))
    if not jpath.exists() and not jpath.is_symlink():
        return False
    jpath.unlink()
    return True
