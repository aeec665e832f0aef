"""The project key, pseudonyms, and the private mapping file.

The default key file (~/.config/wsianon/key or $WSIANON_KEY_FILE; 32 random
bytes, hex, mode 0600) is created on first use; a key named with ``--key-file``
must exist (``wsianon key init PATH`` creates one), so a mistyped path is an
error, never a silent new key.  A key readable by group or others is refused.

Slide pseudonyms are keyed hashes (HMAC-SHA-256) of one of (``--pseudonym-from``):

* ``relpath`` (default): the path relative to the input root given on the command
  line, prefixed with that root's own name (a file given directly: its name) —
  survives moving or re-mounting the archive;
* ``content``: the slide's content fingerprint (size, head and tail bytes of
  every file) — survives renaming too; identical copies collide and are refused;
* ``path``: the absolute path (the behaviour of wsianon 0.1).

Paths are hashed as bytes (``os.fsencode``), so any file name works.  Without
the key nobody can recompute a pseudonym.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import secrets
from pathlib import Path

from wsianon.io.keyed import keyed_hex
from wsianon.io.safetext import os_reason
from wsianon.errors import OutputError, WsianonError
from wsianon.io.atomic import write_private

DEFAULT_KEY = Path(os.environ.get("WSIANON_KEY_FILE", Path.home() / ".config" / "wsianon" / "key"))


def read_key(path: Path) -> bytes:
    """Load an existing key file; refuses a key readable by group or others."""
    path = Path(path)
    try:
        st = path.stat()
        text = path.read_text().strip()
        key = bytes.fromhex(text)
    except FileNotFoundError:
        raise WsianonError(path, "key file does not exist (create one with 'wsianon key init PATH')") from None
    except (OSError, ValueError) as exc:
        raise WsianonError(path, f"unreadable key file: {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    if st.st_mode & 0o077:
        raise WsianonError(path, f"key file is readable by others (mode {st.st_mode & 0o777:o}); chmod 600 it")
    if len(key) < 16:
        raise WsianonError(path, "key file holds fewer than 16 bytes")
    return key


def init_key(path: Path) -> bytes:
    """Create a new key file (mode 0600); refuses to replace an existing one."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise WsianonError(path, "key file already exists (refusing to replace a key)")
    key = secrets.token_bytes(32)
    try:
        write_private(path, (key.hex() + "\n").encode())
    except OSError as exc:
        raise OutputError(path, f"cannot create key file: {os_reason(exc)}") from None
    return key


def key_path(path: Path | None) -> Path:
    """The key file a job uses: ``path``, else the default."""
    return Path(path) if path else Path(DEFAULT_KEY)


def load_or_create_key(path: Path | None) -> bytes:
    """An explicit ``path`` must exist; the default key is created on first use."""
    if path:
        return read_key(Path(path))
    path = Path(DEFAULT_KEY)
    if path.exists() or path.is_symlink():
        return read_key(path)
    return init_key(path)


def key_fingerprint(key: bytes) -> str:
    """A public identifier of the key (never the key): it tells two keys apart."""
    return "sha256:" + hashlib.sha256(b"wsianon-key-fingerprint\x00" + key).hexdigest()[:16]


def slide_pseudonym(key: bytes, source: Path) -> str:
    """``path`` mode: keyed hash of the absolute path."""
    return "WSI-" + keyed_hex(key, "slide", os.fsencode(Path(source).resolve()))


def pseudonym_from(key: bytes, mode: str, *, source: Path, relpath: str | bytes | None = None, content: str | None = None) -> str:
    """The slide pseudonym in ``mode`` (relpath | content | path); see the module docstring."""
    if mode == "relpath" and relpath is not None:
        return "WSI-" + keyed_hex(key, "slide-relpath", relpath)
    if mode == "content" and content is not None:
        return "WSI-" + keyed_hex(key, "slide-content", content)
    return slide_pseudonym(key, source)


class Mapping:
    """source → output rows, written outside OUT with mode 0600."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[tuple[str, str, str]] = []

    def add(self, source: Path, output: str, status: str) -> None:
        self.rows.append((os.fsdecode(os.fsencode(Path(source).resolve())), output, status))

    def write(self) -> None:
        existing: list[list[str]] = []
        if self.path.exists():
            with open(self.path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
                existing = [r for r in csv.reader(fh)][1:]
        seen = {(r[0], r[1]) for r in self.rows}
        merged = [r for r in existing if len(r) >= 2 and (r[0], r[1]) not in seen] + [list(r) for r in self.rows]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["source", "output", "status"])
        w.writerows(merged)
        write_private(self.path, buf.getvalue().encode("utf-8", "surrogateescape"))
