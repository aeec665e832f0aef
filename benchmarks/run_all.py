"""Run every benchmark in one process run (``make bench``) and print a summary; nothing is asserted.

    python benchmarks/run_all.py [--quick] [--json FILE] [--workdir DIR] [--only native,dicom,memory,batch]

Full sizes (issue 14 acceptance): native run+verify vs cp+fsync on a 2 GiB slide, 4 alternating
pairs; in-place; the floor of a verified copy (3 pairs); the source not cached (3 pairs); the copy path's page-cache hints off/on (cold source, 3 pairs); DICOM vs bare wsidicomizer on 1 GiB, 4 pairs, as its users call it and given wsianon's batch size; peak RSS at 1 and 4 GiB; batch of
20 slides of 100 MB with 1 and 2 workers, 2 pairs.  ``--quick``: small sizes, one or two pairs
(about a minute).  ``BENCH_GB`` overrides the native slide size.  Each benchmark also runs alone
(``python benchmarks/bench_native.py --help``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_batch  # noqa: E402
import bench_dicom  # noqa: E402
import bench_memory  # noqa: E402
import bench_native  # noqa: E402
from _common import load  # noqa: E402

FULL = {
    "native_gb": float(os.environ.get("BENCH_GB", "2")),
    "native_pairs": 4,
    "hint_pairs": 3,
    "cold_pairs": 3,
    "floor_pairs": 3,
    "dicom_gb": 1.0,
    "dicom_pairs": 4,
    "memory_gb": [1.0, 4.0],
    "batch_slides": 20,
    "batch_mb": 100.0,
    "batch_pairs": 2,
}
QUICK = {
    "native_gb": 0.1,
    "native_pairs": 2,
    "hint_pairs": 1,
    "cold_pairs": 1,
    "floor_pairs": 1,
    "dicom_gb": 0.05,
    "dicom_pairs": 1,
    "memory_gb": [0.05, 0.2],
    "batch_slides": 4,
    "batch_mb": 10.0,
    "batch_pairs": 1,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run, not figures to quote)")
    ap.add_argument("--json", type=Path, default=None, help="write all results here")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch parent (same file system as outputs)")
    ap.add_argument("--only", default="native,dicom,memory,batch")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    only = set(args.only.split(","))
    results: dict = {
        "config": cfg,
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_start": load(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    work = Path(tempfile.mkdtemp(prefix="wsianon-bench-", dir=args.workdir))
    try:
        if "native" in only:
            print("== native: run+verify vs cp+fsync, in-place", flush=True)
            d = work / "native"
            d.mkdir()
            results["native"] = bench_native.bench(cfg["native_gb"], cfg["native_pairs"], d, cfg["hint_pairs"], cfg["cold_pairs"], cfg["floor_pairs"])
        if "dicom" in only:
            print("== dicom: wsianon --target dicom vs bare wsidicomizer", flush=True)
            d = work / "dicom"
            d.mkdir()
            results["dicom"] = bench_dicom.bench(cfg["dicom_gb"], cfg["dicom_pairs"], d)
            # like for like: bare wsidicomizer given the batch size wsianon asks wsidicom for
            from wsianon.converters.dicom.bridge import PASSTHROUGH_CHUNK

            print(f"== dicom: the same, bare wsidicomizer with chunk_size={PASSTHROUGH_CHUNK} (wsianon's own overhead)", flush=True)
            results["dicom_like_for_like"] = bench_dicom.bench(cfg["dicom_gb"], cfg["dicom_pairs"], d, bare_chunk=PASSTHROUGH_CHUNK)
        if "memory" in only:
            print("== memory: peak RSS by slide size", flush=True)
            d = work / "memory"
            d.mkdir()
            results["memory"] = bench_memory.bench(cfg["memory_gb"], "native", d)
        if "batch" in only:
            print("== batch: --workers 1 vs --workers 2", flush=True)
            d = work / "batch"
            d.mkdir()
            results["batch"] = bench_batch.bench(cfg["batch_slides"], cfg["batch_mb"], cfg["batch_pairs"], d)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_end"] = load()
    print("== summary" + (" (--quick: smoke sizes)" if args.quick else ""))
    if "native" in results:
        n = results["native"]
        print(
            f"native {n['size_bytes'] / 1e9:.2f} GB: cp+fsync {n['cp_fsync']['wall']:.2f} s, run+verify {n['run_verify']['wall']:.2f} s, "
            f"ratio {n['ratio']:.2f} (goal 1.5; CPU {n['cpu_ratio']:.2f}x); in-place patch {n['in_place_patch_ms']:.1f} ms"
        )
        if "floor" in n:
            f = n["floor"]
            print(f"  verified-copy floor (copy + SHA-256 + read-back, nothing else) {f['floor']['wall']:.2f} s: {f['ratio']:.2f}x cp+fsync")
        if "cold" in n:
            c = n["cold"]
            print(f"  source not cached: cp+fsync {c['cp_fsync']['wall']:.2f} s, run+verify {c['run_verify']['wall']:.2f} s, ratio {c['ratio']:.2f}")
        if "cache_hints" in n:
            h = n["cache_hints"]
            print(
                f"  cache hints (cold source): off {h['off']['wall']:.2f} s, on {h['on']['wall']:.2f} s (ratio {h['ratio_on_off']:.3f}); "
                f"resident after a run off {h['resident_after_run']['off']}, on {h['resident_after_run']['on']} MiB"
            )
    if "dicom" in results:
        d = results["dicom"]
        print(
            f"dicom {d['size_bytes'] / 1e9:.2f} GB: bare {d['bare']['wall']:.2f} s, wsianon {d['wsianon']['wall']:.2f} s, ratio {d['ratio']:.3f} (goal 1.1; CPU {d['cpu_ratio']:.2f}x)"
        )
    if "dicom_like_for_like" in results:
        d = results["dicom_like_for_like"]
        print(
            f"  like for like (bare with chunk_size={d['bare_chunk']}): bare {d['bare']['wall']:.2f} s, wsianon {d['wsianon']['wall']:.2f} s, ratio {d['ratio']:.3f}"
        )
    if "memory" in results:
        m = results["memory"]
        print("peak RSS: " + ", ".join(f"{r['size_gb']:g} GiB {r['rss_mib']:.0f} MiB" for r in m["rows"]) + f" (spread {m['spread'] * 100:.1f}%, goal 10%)")
    if "batch" in results:
        b = results["batch"]
        print(f"batch {b['slides']} slides: 1 worker {b['workers1']['wall']:.2f} s, 2 workers {b['workers2']['wall']:.2f} s, speed-up {b['speedup']:.2f}x")
    print(f"load average (1 min) {results['load_start']:.1f} at start, {results['load_end']:.1f} at end")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
