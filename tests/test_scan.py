"""The canary scanner finds every encoding of a value, across chunk boundaries, with both engines."""

from __future__ import annotations

import base64

import pytest

import wsianon.io.scan as scan
from wsianon.io.scan import Canary, Scanner, base64_fragments

ENGINES = ["re"] + (["hyperscan"] if scan._hs is not None else [])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "encode,encoding",
    [
        (lambda v: v.encode(), "text"),
        (lambda v: v.upper().encode(), "text"),
        (lambda v: v.encode("utf-16-le"), "utf-16"),
        (lambda v: v.encode("utf-16-be"), "utf-16"),
        (lambda v: base64.b64encode(v.encode()), "base64"),
        (lambda v: base64.b64encode(b"x" + v.encode()), "base64"),
        (lambda v: base64.b64encode(b"xy" + v.encode() + b"z"), "base64"),
    ],
)
def test_finds_each_encoding(tmp_path, engine, encode, encoding):
    value = "Case-2024-Sm1th"
    blob = b"\x00\xff" * 5000 + encode(value) + b"\x17" * 3000
    f = tmp_path / "f.bin"
    f.write_bytes(blob)
    hits = Scanner([Canary("Barcode", value)], engine=engine).scan_file(f)
    assert hits, encoding
    assert hits[0].canary == "Barcode" and hits[0].encoding == encoding
    assert 0 < hits[0].offset < len(blob)


@pytest.mark.parametrize("engine", ENGINES)
def test_match_across_chunk_boundary(tmp_path, monkeypatch, engine):
    monkeypatch.setattr(scan, "CHUNK", 1024)
    value = "ACC-99887766"
    blob = b"a" * (1024 - 5) + value.encode() + b"b" * 2000
    f = tmp_path / "f.bin"
    f.write_bytes(blob)
    hits = Scanner([Canary("x", value)], engine=engine).scan_file(f)
    assert [h.offset for h in hits] == [1019]


@pytest.mark.parametrize("engine", ENGINES)
def test_clean_file_and_short_values(tmp_path, engine):
    f = tmp_path / "f.bin"
    f.write_bytes(b"nothing to see here" * 100)
    s = Scanner([Canary("a", "Smith-4711"), Canary("b", "ab")], engine=engine)
    assert s.scan_file(f) == []
    assert [c.name for c in s.skipped] == ["b"]  # too short to byte-scan, reported


def test_base64_fragments_cover_all_alignments():
    v = b"Patient-Name-X"
    frags = base64_fragments(v)
    assert len(frags) == 3
    for pre in (b"", b"1", b"12", b"123"):
        enc = base64.b64encode(pre + v + b"tail")
        assert any(fr in enc for fr in frags)
