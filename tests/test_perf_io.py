"""Page-cache hints (wsianon.io.cache) release what they say they release and never change a
byte, and the benchmarks' measuring method (peak RSS of a child process) is sound.  No timing
is asserted anywhere."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import wsianon.io.cache as cache
from wsianon.io.atomic import Staging
from wsianon.io.plan import FilePlan, Patch, apply_copy

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_hints_off_by_environment():
    """WSIANON_CACHE_HINTS=off makes every hint a no-op (what the benchmarks compare against)."""
    code = (
        "import os, tempfile, wsianon.io.cache as c\n"
        "fd, p = tempfile.mkstemp(); os.write(fd, b'x' * 8192)\n"
        "print(c.ENABLED, c.drop(fd))\n"
        "os.close(fd); os.unlink(p)\n"
    )
    env = {**os.environ, "WSIANON_CACHE_HINTS": "off"}
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert off == ["False", "False"]
    env["WSIANON_CACHE_HINTS"] = "on"
    on = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert on[0] == "True"
    if hasattr(os, "posix_fadvise"):
        assert on[1] == "True"


def _resident_bytes(path: Path) -> int:
    r = subprocess.run(["fincore", "-b", "-n", "-o", "RES", str(path)], capture_output=True, text=True, check=True)
    return int(r.stdout.split()[0])


needs_fincore = pytest.mark.skipif(
    shutil.which("fincore") is None or not hasattr(os, "posix_fadvise"),
    reason="fincore (util-linux) or posix_fadvise not available: page-cache residency cannot be observed",
)


def _cached_file(path: Path, size: int = 4 << 20) -> Path:
    path.write_bytes(os.urandom(size))
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)  # clean pages: DONTNEED can release them at once
    os.close(fd)
    path.read_bytes()
    return path


@needs_fincore
def test_drop_tree_releases_pages_of_files_only_not_through_links(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    a = _cached_file(tree / "a.dcm")
    b = _cached_file(tree / "sub" / "b.dcm")
    outside = _cached_file(tmp_path / "outside.bin")
    (tree / "link").symlink_to(outside)
    assert _resident_bytes(a) > 0 and _resident_bytes(outside) > 0
    assert cache.drop_tree(tree) == 2  # a and b; the link is not followed
    assert _resident_bytes(a) == 0 and _resident_bytes(b) == 0
    assert _resident_bytes(outside) > 0


@needs_fincore
def test_drop_tree_later_runs_in_the_background_and_at_exit(tmp_path):
    """``drop_tree_later`` releases the pages from its own thread (``settle`` waits for it; a
    path gone meanwhile is no error), and a process that exits with a drop still queued runs it
    before it ends."""
    a = _cached_file(tmp_path / "a.svs")
    cache.drop_tree_later(tmp_path / "gone.svs")  # removed before the drop ran: nothing to do
    gate = threading.Event()
    seen: list[str] = []
    orig = cache.drop_tree

    def gated(path, only_synced=False):
        gate.wait(5)
        seen.append(threading.current_thread().name)
        return orig(path, only_synced)

    try:
        cache.drop_tree = gated
        cache.drop_tree_later(a)
        assert _resident_bytes(a) > 0  # queued behind the gate: the caller did not wait
        gate.set()
        cache.settle()
    finally:
        cache.drop_tree = orig
    assert _resident_bytes(a) == 0 and seen and seen[-1].startswith("wsianon-cache-drop")
    b = _cached_file(tmp_path / "b.svs")
    code = "import sys, wsianon.io.cache as c\nc.drop_tree_later(sys.argv[1])\n"
    subprocess.run([sys.executable, "-c", code, str(b)], check=True, timeout=60)
    assert _resident_bytes(b) == 0


@needs_fincore
def test_committed_outputs_leave_the_page_cache_when_fsynced(tmp_path):
    """An output written (and fsynced) by apply_copy leaves the cache when committed; a file
    some other writer left (maybe dirty: the DICOM writer does not fsync) is not touched."""
    src = _cached_file(tmp_path / "src.svs")
    out = tmp_path / "out"
    with Staging(out, "S1") as st:
        apply_copy(FilePlan("S1.svs", src, [Patch(10, 4, b"ANON", "test")]), st.path("S1.svs"))
        _cached_file(st.path("other.dcm"))
        st.path("S1.svs").read_bytes()
        assert _resident_bytes(st.path("S1.svs")) > 0
        st.commit()
    cache.settle()  # the drop runs in the background
    assert _resident_bytes(out / "S1.svs") == 0
    assert _resident_bytes(out / "other.dcm") > 0
    assert _resident_bytes(src) > 0  # never the source
    expected = bytearray(src.read_bytes())
    expected[10:14] = b"ANON"
    assert (out / "S1.svs").read_bytes() == bytes(expected)  # only the cache is affected


def _bench_common():
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("_common")
    finally:
        sys.path.remove(str(BENCH))


def test_benchmark_child_rss_is_the_child_own_peak():
    """ru_maxrss of an exec'd child includes the high-water mark of the process that forked it;
    the benchmarks launch through a small launcher so a 7 MiB program reads as small and a
    200 MiB allocation as at least 200 MiB, whatever this (pytest-sized) process holds."""
    common = _bench_common()
    ballast = bytearray(300 << 20)  # this process is now big: it must not leak into the figure
    small = common.child(["true"])
    big = common.child([sys.executable, "-S", "-c", "x = bytearray(200 << 20); x[::4096] = b'1' * len(x[::4096])"])
    del ballast
    assert small["rc"] == 0 and big["rc"] == 0
    assert small["rss_mib"] < 50
    assert big["rss_mib"] >= 200
    assert big["user"] + big["sys"] > 0 and big["wall"] > 0


# -- compact tile tables (wsianon.io.tiff.TiffStructure.data_span_arrays) -----------------------


def _span_fixtures(tmp_path: Path) -> list[Path]:
    from tests.fixtures.ndpi_gen import make_ndpi, sparse_supported
    from tests.fixtures.svs_gen import write_svs

    files = [Path(__file__).parent / "data" / "CMU-1-Small-Region.svs"]
    files.append(write_svs(tmp_path / "classic.svs").path)
    files.append(write_svs(tmp_path / "big.svs", bigtiff=True).path)
    files.append(write_svs(tmp_path / "be.svs", byteorder=">").path)
    files.append(make_ndpi(tmp_path / "s.ndpi")[0])
    if sparse_supported(tmp_path):  # offsets beyond 4 GiB through the NDPI high halves
        files.append(make_ndpi(tmp_path / "big.ndpi", big=True)[0])
    return files


def test_data_span_arrays_equal_data_spans(tmp_path):
    from wsianon.io.tiff import TiffStructure

    n_ifds = 0
    for f in _span_fixtures(tmp_path):
        with TiffStructure(f) as ts:
            for ifd in ts.ifds:
                spans = ts.data_spans(ifd)
                o, c = ts.data_span_arrays(ifd)
                assert o.dtype == c.dtype == "uint64"
                assert list(zip(o.tolist(), c.tolist())) == spans, (f.name, ifd.index)
                n_ifds += bool(spans)
    assert n_ifds >= 10


def test_data_span_arrays_refuse_data_beyond_the_end(tmp_path):
    """Same verdict as data_spans: a tile that ends one byte past the file is refused; a file
    that ends exactly at the last tile is fine."""
    import pytest as _pytest

    from tests.fixtures.svs_gen import write_svs
    from wsianon.errors import CorruptInput
    from wsianon.io.tiff import TiffStructure

    src = write_svs(tmp_path / "t.svs", bigtiff=True).path
    with TiffStructure(src) as ts:
        ifd = ts.ifds[0]
        o, c = ts.data_span_arrays(ifd)
        last_end = int((o + c).max())
        ts.size = last_end  # as if the file ended right after the last tile: still valid
        assert len(ts.data_span_arrays(ifd)[0]) == len(ts.data_spans(ifd)) > 1
        ts.size = last_end - 1  # one byte short: both refuse
        with _pytest.raises(CorruptInput, match="beyond the end"):
            ts.data_spans(ifd)
        with _pytest.raises(CorruptInput, match="beyond the end"):
            ts.data_span_arrays(ifd)


def test_native_benchmark_smoke(tmp_path):
    """benchmarks/ keep working against the CLI (a tiny slide, one pair; figures not asserted)."""
    sys.path.insert(0, str(BENCH))
    try:
        bench_native = importlib.import_module("bench_native")
    finally:
        sys.path.remove(str(BENCH))
    r = bench_native.bench(0.004, 1, tmp_path, hint_pairs=1, cold_pairs=1)  # raises SystemExit if a run fails
    assert r["size_bytes"] > 3_000_000 and r["pyramid"]  # level 0 and one 4x level, verified clean
    assert r["cold"]["run_verify"]["wall"] > 0 and r["cold"]["cp_fsync"]["wall"] > 0
    assert r["run_verify"]["wall"] > 0 and r["cp_fsync"]["wall"] > 0 and r["ratio"] > 0
    assert r["run_verify"]["rss_mib"] > r["cp_fsync"]["rss_mib"]  # a Python process against cp
    assert r["in_place_bytes"] > 0  # the description was patched in place
    if shutil.which("fincore") and hasattr(os, "posix_fadvise"):
        assert r["cache_hints"]["resident_after_run"]["on"]["output_mib"] == 0
        assert r["cache_hints"]["resident_after_run"]["off"]["output_mib"] > 0


def test_revision_benchmark_refuses_a_failed_run(tmp_path):
    """``bench_revisions.run`` times a whole ``wsianon run``; a run that fails or quarantines its
    slide is no timing of the job and stops the benchmark (it printed the time of a quarantined
    DICOM run as if it were one)."""
    sys.path.insert(0, str(BENCH))
    try:
        bench_revisions = importlib.import_module("bench_revisions")
    finally:
        sys.path.remove(str(BENCH))
    src = tmp_path / "CASE-1.svs"
    src.write_bytes(b"II*\x00" + b"\x00" * 64)  # no slide
    key = tmp_path / "key"
    assert subprocess.run([sys.executable, "-m", "wsianon.cli", "key", "init", str(key)], capture_output=True).returncode == 0
    with pytest.raises(SystemExit, match=r"wsianon run failed \(rc 1"):
        bench_revisions.run(src, tmp_path / "out", key, None)
