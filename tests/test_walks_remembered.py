"""One walk of a DICOM instance's items serves every verifier check that locates its frames
(``io.dicomframes.walks_remembered``): the frame-segment check, the closed world's end of the data
set and the pyramid's frames each walked the base level's 23,409 item headers (0.16 s a walk)."""

from __future__ import annotations

import os
import struct
from collections import Counter
from pathlib import Path

import pytest

from wsianon.io import dicomframes as DF


def _items_file(path: Path, sizes: list[int]) -> int:
    """A file of encapsulated items (an empty offset table, then ``sizes``) and the delimiter;
    returns where the first item header is."""
    body = struct.pack("<HHI", 0xFFFE, 0xE000, 0)
    for n in sizes:
        body += struct.pack("<HHI", 0xFFFE, 0xE000, n) + bytes(n)
    body += struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    path.write_bytes(b"\x01" * 16 + body)
    return 16


@pytest.fixture
def walks(monkeypatch):
    done: list[int] = []
    real = DF.walk_items

    def counting(fd, pos, size):
        done.append(os.fstat(fd).st_ino)
        return real(fd, pos, size)

    monkeypatch.setattr(DF, "walk_items", counting)
    return done


def test_a_walk_is_answered_again_only_inside_the_scope_and_for_the_same_file(tmp_path, walks):
    f = tmp_path / "a.bin"
    pos = _items_file(f, [10, 12, 14])
    with open(f, "rb") as fh:
        fd, size = fh.fileno(), os.fstat(fh.fileno()).st_size
        a = DF.remembered_walk(fd, pos, size)
        b = DF.remembered_walk(fd, pos, size)
        assert len(walks) == 2 and a is not b  # no scope: every call walks
        with DF.walks_remembered():
            c = DF.remembered_walk(fd, pos, size)
            d = DF.remembered_walk(fd, pos, size)
            assert len(walks) == 3 and c is d
            assert [v[1] for v in c.values] == [0, 10, 12, 14] and c.end == size and c.problem is None
            assert DF.remembered_walk(fd, pos + 8, size) is not c  # another start: walked
            assert len(walks) == 4
        assert DF._walks == {}  # the scope's memory is gone with it
    # the same path rewritten (another size, another modification): walked again, its own answer
    with DF.walks_remembered():
        with open(f, "rb") as fh:
            first = DF.remembered_walk(fh.fileno(), pos, os.fstat(fh.fileno()).st_size)
        _items_file(f, [10, 12])
        with open(f, "rb") as fh:
            again = DF.remembered_walk(fh.fileno(), pos, os.fstat(fh.fileno()).st_size)
    assert len(first.values) == 4 and len(again.values) == 3


def test_nested_scopes_keep_the_memory_until_the_outermost_closes(tmp_path, walks):
    f = tmp_path / "a.bin"
    pos = _items_file(f, [4])
    with open(f, "rb") as fh, DF.walks_remembered():
        size = os.fstat(fh.fileno()).st_size
        with DF.walks_remembered():
            DF.remembered_walk(fh.fileno(), pos, size)
        DF.remembered_walk(fh.fileno(), pos, size)
        assert len(walks) == 1
    assert DF._walks == {}


def test_a_dicom_run_walks_each_instance_once(cli, tmp_path, monkeypatch, walks):
    """The whole DICOM route: its verification asks for the base level's items from three checks
    and walks them once; the verdict is unchanged (verified)."""
    from tests.fixtures.helpers import verified_dicom_run

    asked: Counter = Counter()
    real = DF.remembered_walk

    def asking(fd, pos, size):
        asked[os.fstat(fd).st_ino] += 1
        return real(fd, pos, size)

    monkeypatch.setattr(DF, "remembered_walk", asking)
    import wsianon.verify.dicom.jpeg as J

    monkeypatch.setattr(J, "remembered_walk", asking)  # the closed world imports it from io.dicomframes when it runs
    out, _s = verified_dicom_run(cli, tmp_path)  # converted and verified
    inodes = {p.stat().st_ino for p in out.rglob("*.dcm")}
    walked = Counter(i for i in walks if i in inodes)
    assert walked and max(walked.values()) == 1, walked  # each instance walked once
    assert max(asked[i] for i in inodes) >= 3, asked  # though asked for by three checks
