"""The project key, pseudonyms, and the private mapping file.

The key file (32 random bytes, hex, mode 0600) is created on first use.  Slide
pseudonyms are keyed hashes: the same source path and key always give the same
name; without the key nobody can recompute it.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import os
import secrets
from pathlib import Path

from wsianon.errors import OutputError, WsianonError
from wsianon.io.atomic import write_private

DEFAULT_KEY = Path(os.environ.get("WSIANON_KEY_FILE", Path.home() / ".config" / "wsianon" / "key"))


def load_or_create_key(path: Path | None) -> bytes:
    path = Path(path) if path else DEFAULT_KEY
    if path.exists():
        try:
            text = path.read_text().strip()
            key = bytes.fromhex(text)
        except (OSError, ValueError) as exc:
            raise WsianonError(path, f"unreadable key file: {exc}") from None
        if len(key) < 16:
            raise WsianonError(path, "key file holds fewer than 16 bytes")
        return key
    key = secrets.token_bytes(32)
    try:
        write_private(path, (key.hex() + "\n").encode())
    except OSError as exc:
        raise OutputError(path, f"cannot create key file: {exc.strerror or exc}") from None
    return key


def keyed_hex(key: bytes, *parts: str, n: int = 16) -> str:
    msg = "\x1f".join(parts).encode("utf-8")
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:n]


def slide_pseudonym(key: bytes, source: Path) -> str:
    return "WSI-" + keyed_hex(key, "slide", str(Path(source).resolve()))


class Mapping:
    """source → output rows, written outside OUT with mode 0600."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[tuple[str, str, str]] = []

    def add(self, source: Path, output: str, status: str) -> None:
        self.rows.append((str(Path(source).resolve()), output, status))

    def write(self) -> None:
        existing: list[list[str]] = []
        if self.path.exists():
            with open(self.path, newline="") as fh:
                existing = [r for r in csv.reader(fh)][1:]
        seen = {(r[0], r[1]) for r in self.rows}
        merged = [r for r in existing if len(r) >= 2 and (r[0], r[1]) not in seen] + [list(r) for r in self.rows]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["source", "output", "status"])
        w.writerows(merged)
        write_private(self.path, buf.getvalue().encode())
