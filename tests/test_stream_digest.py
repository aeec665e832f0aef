"""The digests of a written copy (wsianon.io.digests.StreamDigest) are those of the file on disk.

* apply_copy hashes the bytes it means to write (source, patches laid over it — data and zero
  fills, overlapping fills, a patch across the tap's buffer boundary — and the appended tail);
  the verifier's read-back then proves the file is those bytes with xxh3_128 and adopts the
  SHA-256 without computing it, and that SHA-256 is the file's own;
* a file changed after it was written (its identity kept, so the registry still names it) is
  not taken on trust: the read-back computes SHA-256 from the file;
* new-content files and files without any patch take the same way.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

import wsianon.io.plan as plan_mod
import wsianon.verify.readback as readback
from wsianon.io import digests
from wsianon.io.plan import FilePlan, Patch, apply_copy
from wsianon.verify.readback import read_back


@pytest.fixture
def small_chunks(monkeypatch):
    # buffers of 64 KiB so that patches fall across buffer boundaries of a small file
    monkeypatch.setattr(plan_mod, "CHUNK", 1 << 16)


@pytest.fixture
def sha_calls(monkeypatch):
    calls: list[int] = []
    real = hashlib.sha256

    def counting(*a):
        calls.append(1)
        return real(*a)

    monkeypatch.setattr(readback, "hashlib", SimpleNamespace(sha256=counting))  # the read-back's own
    real_of = digests.sha256_of

    def counting_of(*a, **k):  # the read-back's second read of a file that does not match
        calls.append(1)
        return real_of(*a, **k)

    monkeypatch.setattr(digests, "sha256_of", counting_of)
    return calls


def _source(tmp_path: Path, size: int = 300_000) -> Path:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(size))
    return src


def _patched_plan(src: Path) -> FilePlan:
    edge = (1 << 16) - 3  # across the first buffer boundary
    return FilePlan(
        dest="out.bin",
        source=src,
        patches=[
            Patch(10, 5, b"ABCDE", "data"),
            Patch(edge, 7, b"0123456", "across a boundary"),
            Patch(100_000, 5000, None, "zero fill"),
            Patch(102_000, 6000, None, "overlapping zero fill"),
            Patch(299_990, 10, b"Z" * 10, "at the end"),
        ],
        append=b"appended tail",
    )


def _expected_bytes(fp: FilePlan) -> bytes:
    b = bytearray(fp.source.read_bytes() if fp.source else fp.content or b"")
    for p in fp.patches:
        b[p.offset : p.end] = p.data if p.data is not None else bytes(p.length)
    return bytes(b) + fp.append


@pytest.mark.parametrize("kind", ["patched", "no-patch", "content"])
def test_read_back_adopts_the_written_sha256_which_is_the_files(tmp_path, small_chunks, sha_calls, kind):
    src = _source(tmp_path)
    fp = {
        "patched": _patched_plan(src),
        "no-patch": FilePlan(dest="out.bin", source=src),
        "content": FilePlan(dest="out.bin", content=b"new content " * 1000, append=b"+tail"),
    }[kind]
    dest = tmp_path / "out.bin"
    apply_copy(fp, dest)
    data = dest.read_bytes()
    assert data == _expected_bytes(fp)
    rb = read_back(dest, "out.bin")
    assert rb.sha256 == hashlib.sha256(data).hexdigest()
    assert rb.size == len(data)
    assert sha_calls == []  # proven by xxh3_128 equality, not recomputed
    assert digests.lookup(dest) == rb.sha256  # the record finds it (rename keeps the identity)
    moved = tmp_path / "final.bin"
    dest.rename(moved)
    assert digests.lookup(moved) == rb.sha256


def test_a_file_changed_after_writing_is_hashed_from_its_own_bytes(tmp_path, small_chunks, sha_calls):
    src = _source(tmp_path)
    fp = _patched_plan(src)
    dest = tmp_path / "out.bin"
    apply_copy(fp, dest)
    st = os.stat(dest)
    with open(dest, "r+b") as f:  # same size, mtime restored: the registry still names this file
        f.seek(200_000)
        f.write(b"tampered")
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    rb = read_back(dest, "out.bin")
    assert rb.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert rb.sha256 != hashlib.sha256(_expected_bytes(fp)).hexdigest()
    assert sha_calls  # computed from the file


def test_a_file_nobody_registered_is_hashed_with_sha256(tmp_path, sha_calls):
    f = tmp_path / "plain.bin"
    f.write_bytes(b"plain file, written by something else")
    rb = read_back(f, "plain.bin")
    assert rb.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    assert sha_calls


def _feed_all(s: digests.StreamDigest, data: bytes, step: int) -> None:
    for o in range(0, len(data), step):
        s.feed(o, data[o : o + step])


def _intended(data: bytes, patches: list, tail: bytes) -> bytes:
    b = bytearray(data)
    for p in patches:
        b[p.offset : p.end] = p.data if p.data is not None else bytes(p.length)
    return bytes(b) + tail


def test_both_digests_are_the_intended_bytes_whatever_the_buffers(tmp_path):
    """SHA-256 (in the digest's thread) and xxh3_128 (in the feeding thread) each take every
    buffer in order, patched, and the tail: equal to hashing the intended bytes at once, for
    buffers of any size (one byte, across patches, larger than the file)."""
    import threading

    import xxhash

    fp = _patched_plan(_source(tmp_path))
    whole = fp.source.read_bytes()
    for step in (1 << 16, 4093, 1, len(whole) + 10):
        data = whole[:3000] if step == 1 else whole  # a byte at a time: a short file keeps it quick
        patches = [p for p in fp.patches if p.end <= len(data)]
        expect = _intended(data, patches, fp.append)
        s = digests.StreamDigest(plan_mod.effective_patches(FilePlan(dest="x", source=None, patches=patches), len(data)), fp.append)
        feeder = threading.Thread(target=_feed_all, args=(s, data, step))
        feeder.start()
        feeder.join()
        assert s.finish(len(data)) == (hashlib.sha256(expect).hexdigest(), xxhash.xxh3_128(expect).hexdigest()), step
        s.close()
