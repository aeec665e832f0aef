"""Batch scaling: ``wsianon run --target native --workers 1`` against ``--workers 2`` on a folder of
generated slides (default 20 of ~100 MB), whole processes, alternating pairs, medians.  On an idle
2-core machine the speed-up should approach 2x; a shared machine caps it.

    python benchmarks/bench_batch.py [--slides 20] [--slide-mb 100] [--pairs 2] [--workdir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import child, fmt, load, make_svs, pairs, warm, wsianon_cmd, project_key, fresh_out  # noqa: E402


def run(inputs: Path, out: Path, key: Path, workers: int) -> dict:
    fresh_out(out)  # a new job each time: a resumed one would skip the work
    return child([*wsianon_cmd(), "run", "--target", "native", str(inputs), "-o", str(out), "--key-file", str(key), "--workers", str(workers)])


def bench(n_slides: int, slide_mb: float, n_pairs: int, work: Path) -> dict:
    inputs = work / "in"
    inputs.mkdir()
    t0 = time.perf_counter()
    first = make_svs(inputs / "BENCH-CASE-0001.svs", slide_mb / 1024)
    for i in range(2, n_slides + 1):  # same pixels, distinct names (the names are identifiers to remove)
        shutil.copyfile(first, inputs / f"BENCH-CASE-{i:04d}.svs")
    total = sum(p.stat().st_size for p in inputs.iterdir())
    print(f"batch: generated {n_slides} slides, {total / 1e9:.2f} GB in {time.perf_counter() - t0:.1f} s (load {load():.1f})", flush=True)
    for p in inputs.iterdir():
        warm(p)
    key = project_key(work)
    res = pairs(lambda: run(inputs, work / "out1", key, 1), lambda: run(inputs, work / "out2", key, 2), n_pairs, "--workers 1", "--workers 2")
    speedup = 1 / res["ratio"]
    print(f"--workers 1  {fmt(res['a'])}  ({total / res['a']['wall'] / 1e6:.0f} MB/s)")
    print(f"--workers 2  {fmt(res['b'])}  ({total / res['b']['wall'] / 1e6:.0f} MB/s)")
    print(f"  speed-up (median of {n_pairs} pairs) {speedup:.2f}x  (ideal 2x on {os.cpu_count()} cores; load {res['load']:.1f})")
    return {
        "slides": n_slides,
        "total_bytes": total,
        "workers1": res["a"],
        "workers2": res["b"],
        "speedup": speedup,
        "pairs": n_pairs,
        "walls_1": res["walls_a"],
        "walls_2": res["walls_b"],
        "load": res["load"],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slides", type=int, default=20)
    ap.add_argument("--slide-mb", type=float, default=100)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="wsianon-bench-", dir=args.workdir))
    try:
        r = bench(args.slides, args.slide_mb, args.pairs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return r


if __name__ == "__main__":
    main()
