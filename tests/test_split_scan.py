"""Base64 forms of the canaries skip the pixel data proven identical to the source (issue 14):
the plain forms (text, UTF-16) are still searched in every byte, the base64 forms in every byte
outside the skipped ranges (read as zeros there, so offsets stay the file's).  No timing is
asserted."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import numpy as np
import pytest

from wsianon.converters.aperio import AperioConverter
from wsianon.io.scan import Canary, Scanner, ScanStream, SplitScanner
from wsianon.pipeline.verify import snapshot_source, verify_native
from wsianon.profiles.policy import Policy

from .fixtures.svs_gen import write_svs
from .test_onepass import _level0, run_native

VALUE = "Jane Doe-12345"


def _blob() -> tuple[bytes, dict[str, int], tuple[np.ndarray, np.ndarray]]:
    rnd = random.Random(7)
    parts: list[bytes] = []
    at: dict[str, int] = {}

    def put(label: str, data: bytes) -> None:
        at[label] = sum(map(len, parts))
        parts.append(data)

    b64 = base64.b64encode(VALUE.encode())
    put("r0", rnd.randbytes(100_000))
    put("b64-outside", b64)
    put("r1", rnd.randbytes(50_000))
    start = sum(map(len, parts))
    put("r2", rnd.randbytes(10_000))
    put("b64-inside", b64)
    put("plain-inside", VALUE.encode())
    put("utf16-inside", VALUE.encode("utf-16-le"))
    put("r3", rnd.randbytes(10_000))
    end = sum(map(len, parts))
    put("r4", rnd.randbytes(30_000))
    put("b64-after", b64)
    put("r5", rnd.randbytes(3_000))
    skip = (np.array([start, end + 40_000], np.int64), np.array([end, end + 40_010], np.int64))
    return b"".join(parts), at, skip


@pytest.mark.parametrize("engine", [None, "re"])
@pytest.mark.parametrize("many", [32, 0])
def test_split_stream_searches_base64_only_outside_the_skipped_ranges(tmp_path, engine, many, monkeypatch):
    """Views of the chunk and of zeros, or (many ranges in a chunk) zeroed copies of small windows."""
    import wsianon.io.scan as scan_mod

    monkeypatch.setattr(scan_mod, "_MANY", many)
    monkeypatch.setattr(scan_mod, "_WINDOW", 1000 if many == 0 else scan_mod._WINDOW)
    blob, at, skip = _blob()
    cans = [Canary("patient", VALUE)]
    whole = Scanner(cans, engine=engine)
    f = tmp_path / "b.bin"
    f.write_bytes(blob)
    ref = {(x.offset, x.encoding) for x in whole.scan_file(f)}
    b64_at = {at["b64-outside"], at["b64-inside"], at["b64-after"]}
    assert {o for o, e in ref if e == "base64"} >= b64_at  # the whole scan finds all three
    split = SplitScanner(cans, engine=engine)
    for step in (7, 4096, 1 << 20):
        st = split.stream("b.bin", skip=skip)
        for i in range(0, len(blob), step):
            st.feed(blob[i : i + step])
        got = {(x.offset, x.encoding) for x in st.close()}
        # exactly the whole scan's findings but the base64 one inside the skipped range
        assert got == ref - {(at["b64-inside"], "base64")}, step
        assert (at["plain-inside"], "text") in got and (at["utf16-inside"], "utf-16") in got


def test_split_scanner_compiles_disjoint_forms():
    cans = [Canary("patient", VALUE)]
    split = SplitScanner(cans)
    assert split.plain.encodings == ("text", "utf-16") and split.encoded.encodings == ("base64",)
    blob = base64.b64encode(VALUE.encode()) + b"  " + VALUE.encode()
    assert {f.encoding for f in split.plain.scan_bytes(blob)} == {"text"}
    assert {f.encoding for f in split.encoded.scan_bytes(blob)} == {"base64"}
    assert {f.encoding for f in Scanner(cans).scan_bytes(blob)} == {"text", "base64"}
    st = ScanStream(Scanner(cans, encodings=()), "x")  # nothing to search: a stream that finds nothing
    st.feed(blob)
    assert st.close() == []


@pytest.fixture
def svs(tmp_path) -> Path:
    return write_svs(tmp_path / "CASE-0815-split.svs", size=(1536, 1024), tile=256).path


def _plant(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def _verify(src: Path, out: Path):
    conv = AperioConverter()
    inv = conv.inspect(src)
    return verify_native(inv, conv, out, [out], Policy(), root=out.parent, snap=snapshot_source(inv))


def test_native_verifier_plain_forms_in_tiles_base64_outside(svs, tmp_path):
    """A canary's plain form inside a level tile's entropy-coded data (source and output alike:
    the tile identity holds) is still found; its base64 form there is not searched; its base64
    form anywhere outside the proven tiles is found, at its offset."""
    canary = "CASE-0815-split"  # the file name: a canary of every run on this source
    offs, cnts = _level0(svs)
    _plant(svs, offs[5] + cnts[5] // 2, canary.encode())
    _plant(svs, offs[9] + cnts[9] // 2, base64.b64encode(canary.encode()))
    _, _, out = run_native(AperioConverter(), svs, tmp_path / "o")
    v = _verify(svs, out)
    checks = {c.name: c for c in v.checks}
    assert checks["tiles-identical"].ok, v.as_dict()
    hits = {(f.offset, f.encoding) for f in v.findings}
    assert (offs[5] + cnts[5] // 2, "text") in hits
    assert not any(e == "base64" for _o, e in hits)
    assert "base64 forms outside" in checks["canary-scan"].detail and not checks["canary-scan"].ok
    with open(out, "ab") as fh:  # past every referenced byte
        at = fh.tell()
        fh.write(b"\0" * 5 + base64.b64encode(b"\0" + canary.encode()))
    v = _verify(svs, out)
    assert any(e == "base64" and at <= o < at + 40 for o, e in {(f.offset, f.encoding) for f in v.findings}), v.as_dict()
    assert not v.ok


def test_native_verifier_without_tile_identity_searches_base64_everywhere(svs, tmp_path, monkeypatch):
    """Where the tile identity cannot vouch for the pixel data (a malformed source tile), the
    base64 forms are searched in every byte, as before."""
    canary = "CASE-0815-split"
    offs, cnts = _level0(svs)
    _plant(svs, offs[9] + cnts[9] // 2, base64.b64encode(canary.encode()))
    _, _, out = run_native(AperioConverter(), svs, tmp_path / "o")
    conv = AperioConverter()
    inv = conv.inspect(svs)
    snap = snapshot_source(inv)
    snap.tiles_malformed = 1
    v = verify_native(inv, conv, out, [out], Policy(), root=out.parent, snap=snap)
    assert any(f.encoding == "base64" for f in v.findings), v.as_dict()
    assert not v.ok
