"""A damaged Index.dat that the analysis does not read far enough to notice, found by the
closed-world walk of every table and page (fuzz campaign ``WSIANON_FUZZ_SEED=2026``, mrxs #80: a
non-hierarchical page's next-page pointer overflowed to 2^31 - 1).  It ended as an internal error
(ValueError); it must be a one-line refusal naming the slide, with nothing written."""

from __future__ import annotations

import struct

import pytest

from tests.conftest import run_subprocess, tree_hashes
from tests.fixtures.mrxs_gen import make_mrxs


def _non_hier_next_pointer(idx: bytes, sid: str, slot: int) -> int:
    """Offset of the next-page pointer of the first page of non-hierarchical record ``slot``."""
    nt = struct.unpack_from("<i", idx, 5 + len(sid) + 4)[0]
    ptr = struct.unpack_from("<i", idx, nt + 4 * slot)[0]
    page = struct.unpack_from("<i", idx, ptr + 4)[0]
    return page + 4


@pytest.mark.parametrize("value", [0x7FFFFFFF, -8])
def test_a_page_pointer_outside_index_dat_is_refused_in_one_line(tmp_path, value):
    info = make_mrxs(tmp_path / "in", "case", images=2, levels=2)
    idx_path = info.folder / "Index.dat"
    idx = bytearray(idx_path.read_bytes())
    # slot 2, a record the output keeps (the fuzz case's: the records the redactor removes have
    # their pages rewritten, so damage there does not reach the output)
    at = _non_hier_next_pointer(bytes(idx), info.canaries["SLIDE_ID"], 2)
    struct.pack_into("<i", idx, at, value)
    idx_path.write_bytes(bytes(idx))
    before = tree_hashes(tmp_path / "in")
    assert run_subprocess("key", "init", tmp_path / "k").returncode == 0
    r = run_subprocess("run", tmp_path / "in", "-o", tmp_path / "out", "--key-file", tmp_path / "k")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 1, r.stderr
    assert len(errors) == 1 and str(info.mrxs) in errors[0] and "Index.dat" in errors[0], r.stderr
    assert "internal error" not in r.stderr
    assert tree_hashes(tmp_path / "in") == before
    assert not list((tmp_path / "out").glob("*.mrxs"))


@pytest.mark.parametrize("key", ["NONHIER_0_COUNT", "NONHIER_COUNT", "HIER_0_COUNT"])
def test_a_huge_declared_count_is_refused_at_once(tmp_path, key):
    """Fuzz campaign ``WSIANON_FUZZ_SEED=99`` (mrxs): a Slidedat.ini count of 10^8 was walked key by
    key (each lookup a pass over the file's lines) and hung the run past the fuzz case's 60 s."""
    info = make_mrxs(tmp_path / "in", "case", images=2, levels=2)
    ini = info.folder / "Slidedat.ini"
    lines = ini.read_text().splitlines(keepends=True)
    hit = [i for i, line in enumerate(lines) if line.split("=")[0].strip() == key]
    assert hit, key
    lines[hit[0]] = f"{key} = 99999999\n"
    ini.write_text("".join(lines))
    assert run_subprocess("key", "init", tmp_path / "k").returncode == 0
    r = run_subprocess("run", tmp_path / "in", "-o", tmp_path / "out", "--key-file", tmp_path / "k")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 1 and len(errors) == 1 and "more entries than the file has lines" in errors[0], r.stderr


def test_a_huge_concat_factor_is_judged_in_bounded_memory(tmp_path):
    """Fuzz seed 124 (MRXS #53): level 0's IMAGE_CONCAT_FACTOR replaced by 99,999,999,999; the
    verifier's position check computed ``1 << factor``, a 12.5 GB integer, and the kernel killed the
    run (a worker crash in the fuzz run).  The factor is bounded as OpenSlide's 32-bit arithmetic
    bounds it before any shift: the slide is quarantined in bounded memory, ``verify`` too."""
    from tests.fixtures.helpers import cli_peak

    m = make_mrxs(tmp_path / "in", "case", images=2, levels=2)
    ini = m.mrxs.parent / "case" / "Slidedat.ini"
    text = ini.read_text()
    assert "IMAGE_CONCAT_FACTOR = 0" in text
    ini.write_text(text.replace("IMAGE_CONCAT_FACTOR = 0", "IMAGE_CONCAT_FACTOR = 99999999999", 1))
    code, out, peak = cli_peak("run", m.mrxs, "-o", tmp_path / "out")
    assert code == 1 and "Traceback" not in out and "internal error" not in out, out
    assert peak < 1024, f"the run peaked at {peak} MiB"
    code, out, peak = cli_peak("verify", m.mrxs)
    assert code == 1 and "NOT CLEAN" in out and "internal error" not in out, out
    assert peak < 1024, f"verify peaked at {peak} MiB"
