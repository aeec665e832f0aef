"""DICOM target: ``wsianon run --target dicom`` (convert, de-identify, verify) against a bare
``WsiDicomizer.convert`` of the same generated slide (no label, no overview, no confidential
metadata), both whole processes, alternating pairs, medians.

    python benchmarks/bench_dicom.py [--size-gb 1] [--pairs 4] [--bare-chunk 16] [--batch N --slide-mb MB] [--workdir DIR] [--json FILE]

wsianon asks wsidicom for batches of 16 passed-through tiles (``bridge.PASSTHROUGH_CHUNK``;
wsidicom's default is two).  ``--bare-chunk 16`` gives bare wsidicomizer the same: the ratio
is then wsianon's own overhead (de-identification, scrub, verification), like for like.

``--batch N``: throughput instead — ``wsianon run --target dicom --workers 1`` over a folder of N
slides (a slide's verification overlaps the next slide's conversion) against one bare process
converting the same N slides one after the other (imports paid once on both sides).

Not a test: nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import child, fmt, load, make_svs, pairs, warm, wsianon_cmd, project_key, fresh_out  # noqa: E402

BARE = (
    "import sys, warnings\n"
    "warnings.simplefilter('ignore')\n"
    "from wsidicomizer import WsiDicomizer\n"
    "chunk = {'chunk_size': int(sys.argv[3])} if len(sys.argv) > 3 else {}\n"
    "WsiDicomizer.convert(sys.argv[1], sys.argv[2], include_label=False, include_overview=False, include_confidential=False, **chunk)\n"
)


def bare(src: Path, out: Path, chunk: int | None = None) -> dict:
    """wsidicomizer as its users call it; ``chunk``: given wsianon's batch size for passed-through
    tiles (``--bare-chunk``), the like-for-like baseline for wsianon's own overhead."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    r = child([sys.executable, "-c", BARE, str(src), str(out), *([str(chunk)] if chunk else [])])
    r["bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return r


BARE_BATCH = (
    "import sys, os, warnings\n"
    "warnings.simplefilter('ignore')\n"
    "from wsidicomizer import WsiDicomizer\n"
    "src, out = sys.argv[1], sys.argv[2]\n"
    "for name in sorted(os.listdir(src)):\n"
    "    WsiDicomizer.convert(os.path.join(src, name), os.path.join(out, name), include_label=False, include_overview=False, include_confidential=False)\n"
)


def bench_batch(n_slides: int, slide_mb: float, n_pairs: int, work: Path) -> dict:
    """Throughput over a folder of slides: ``run --workers 1`` against a bare process converting them in turn."""
    from bench_batch import _inputs

    inputs, key, total = _inputs(work, n_slides, slide_mb, "dicom batch")

    def bare_all() -> dict:
        out = work / "bare"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        return child([sys.executable, "-c", BARE_BATCH, str(inputs), str(out)])

    def ours() -> dict:
        out = work / "out"
        fresh_out(out)
        return child([*wsianon_cmd(), "run", "--target", "dicom", str(inputs), "-o", str(out), "--key-file", str(key), "--workers", "1"])

    res = pairs(bare_all, ours, n_pairs, "bare wsidicomizer (serial)", "wsianon --workers 1")
    print(f"{n_slides} slides, {total / 1e9:.2f} GB")
    print(f"bare WsiDicomizer.convert, one process  {fmt(res['a'])}")
    print(f"wsianon --target dicom --workers 1      {fmt(res['b'])}")
    print(f"  throughput ratio (median of {n_pairs} pairs) {res['ratio']:.3f}  (load {res['load']:.1f})")
    return {
        "slides": n_slides,
        "bytes": total,
        "bare": res["a"],
        "wsianon": res["b"],
        "ratio": res["ratio"],
        "walls_bare": res["walls_a"],
        "walls_wsianon": res["walls_b"],
        "load": res["load"],
    }


def wsianon(src: Path, out: Path, key: Path) -> dict:
    fresh_out(out)  # a new job each time: a resumed one would skip the work
    r = child([*wsianon_cmd(), "run", "--target", "dicom", str(src), "-o", str(out), "--key-file", str(key)])
    r["bytes"] = sum(p.stat().st_size for p in out.rglob("*.dcm"))
    return r


def bench(size_gb: float, n_pairs: int, work: Path, bare_chunk: int | None = None, flat: bool = False) -> dict:
    src = work / "BENCH-CASE-0001.svs"
    t0 = time.perf_counter()
    make_svs(src, size_gb, pyramid=not flat)
    kind = "without a pyramid" if flat else "with a pyramid"
    print(f"dicom: generated {src.stat().st_size / 1e9:.2f} GB slide {kind} in {time.perf_counter() - t0:.1f} s (load {load():.1f})", flush=True)
    warm(src)
    label = f"bare wsidicomizer, chunk_size={bare_chunk}" if bare_chunk else "bare wsidicomizer"
    res = pairs(lambda: bare(src, work / "bare", bare_chunk), lambda: wsianon(src, work / "out", project_key(work)), n_pairs, label, "wsianon --target dicom")
    print(f"{label} {fmt(res['a'])}")
    print(f"wsianon --target dicom    {fmt(res['b'])}")
    print(f"  ratio (median of {n_pairs} pairs) {res['ratio']:.3f}  (goal <= 1.1; ratio of medians {res['ratio_of_medians']:.3f}; load {res['load']:.1f})")
    cpu_b, cpu_w = res["a"]["user"] + res["a"]["sys"], res["b"]["user"] + res["b"]["sys"]
    print(f"  CPU (user+sys) {cpu_w:.2f} s against {cpu_b:.2f} s: {cpu_w / cpu_b:.2f}x")
    return {
        "bare_chunk": bare_chunk,
        "pyramid": not flat,
        "cpu_ratio": cpu_w / cpu_b,
        "size_bytes": src.stat().st_size,
        "bare": res["a"],
        "wsianon": res["b"],
        "ratio": res["ratio"],
        "ratio_of_medians": res["ratio_of_medians"],
        "pairs": n_pairs,
        "walls_bare": res["walls_a"],
        "walls_wsianon": res["walls_b"],
        "load": res["load"],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-gb", type=float, default=1.0)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--batch", type=int, default=0, help="throughput over N slides instead (see above)")
    ap.add_argument("--slide-mb", type=float, default=100.0, help="slide size with --batch")
    ap.add_argument(
        "--bare-chunk",
        type=int,
        default=None,
        help="give bare wsidicomizer this chunk_size (wsianon's PASSTHROUGH_CHUNK, 16): wsianon's overhead like for like",
    )
    ap.add_argument("--flat", action="store_true", help="a slide without a pyramid (level 0 only), as every figure before the fourteenth stop")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="wsianon-bench-", dir=args.workdir))
    try:
        r = bench_batch(args.batch, args.slide_mb, args.pairs, work) if args.batch else bench(args.size_gb, args.pairs, work, args.bare_chunk, flat=args.flat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return r


if __name__ == "__main__":
    main()
