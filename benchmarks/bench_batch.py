"""Batch scaling: ``wsianon run --target native --workers 1`` against ``--workers 2`` on a folder of
generated slides (default 20 of ~100 MB), whole processes, alternating pairs, medians.  On an idle
2-core machine the speed-up should approach 2x; a shared machine caps it.

Besides wall time, each run's CPU is split into the coordinator's own (the main process: selection,
manifest, console, report and record) and its children's (the workers, and the forked decode probe
of each slide), read from the finished process before it is reaped; ``cores`` is CPU / wall, the
average number of cores a run kept busy.  With ``--workers 1`` the slides are processed in the
main process itself, so all but the probes is "coordinator" there.

With ``--target dicom`` the A/B is instead the serial runner's overlap (``--workers 1`` both
sides): ``WSIANON_OVERLAP=on`` (a slide's DICOM verification runs while the next slide converts)
against ``off`` (each slide verified before the next starts); ``--compare workers`` keeps the
workers A/B for either target.  Nothing is asserted: figures only.

    python benchmarks/bench_batch.py [--slides 20] [--slide-mb 100] [--pairs 2] [--workdir DIR] [--json FILE]
    python benchmarks/bench_batch.py --target dicom --slides 6 --slide-mb 80 --pairs 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import child as _common_child  # noqa: E402
from _common import fmt, load, make_svs, pairs, warm, wsianon_cmd, project_key, fresh_out  # noqa: E402


def child(cmd: list[str], env: dict | None = None) -> dict:
    """``_common.child`` (wall, CPU, peak RSS; the coordinator's own CPU and its children's),
    plus ``cores``: the CPU over the wall time."""
    r = _common_child(cmd, env=env)
    r["cores"] = (r["user"] + r["sys"]) / r["wall"] if r["wall"] else 0.0
    return r


def run(inputs: Path, out: Path, key: Path, workers: int, target: str = "native", overlap: str | None = None) -> dict:
    fresh_out(out)  # a new job each time: a resumed one would skip the work
    env = None
    if overlap is not None:
        env = {**os.environ, "WSIANON_OVERLAP": overlap}
    return child([*wsianon_cmd(), "run", "--target", target, str(inputs), "-o", str(out), "--key-file", str(key), "--workers", str(workers)], env=env)


def _split(r: dict, n_slides: int) -> str:
    return (
        f"CPU {r['user'] + r['sys']:.2f} s = coordinator {r['coordinator']:.2f} s + children {r['children']:.2f} s"
        f" ({1000 * (r['user'] + r['sys']) / n_slides:.0f} ms a slide; {r['cores']:.2f} cores busy on average)"
    )


def _inputs(work: Path, n_slides: int, slide_mb: float, label: str) -> tuple[Path, Path, int]:
    """A folder of ``n_slides`` generated slides (same pixels, distinct names: the names are
    identifiers to remove), read into the page cache; the project key; the folder's bytes."""
    inputs = work / "in"
    inputs.mkdir()
    t0 = time.perf_counter()
    first = make_svs(inputs / "BENCH-CASE-0001.svs", slide_mb / 1024)
    for i in range(2, n_slides + 1):
        shutil.copyfile(first, inputs / f"BENCH-CASE-{i:04d}.svs")
    total = sum(p.stat().st_size for p in inputs.iterdir())
    print(f"{label}: generated {n_slides} slides, {total / 1e9:.2f} GB in {time.perf_counter() - t0:.1f} s (load {load():.1f})", flush=True)
    for p in inputs.iterdir():
        warm(p)
    return inputs, project_key(work), total


def _slide_stages(out: Path) -> dict:
    """Medians of the per-slide stage timings the report records (convert, verify, total)."""
    slides = json.loads((out / "wsianon-report.json").read_text())["slides"]
    keys = sorted({k for e in slides for k in (e.get("timings_s") or {})})
    return {k: statistics.median(e["timings_s"][k] for e in slides if k in (e.get("timings_s") or {})) for k in keys}


def bench_overlap(n_slides: int, slide_mb: float, n_pairs: int, work: Path, target: str = "dicom") -> dict:
    """``--workers 1``: the serial runner with the DICOM verification overlapping the next
    slide's conversion (WSIANON_OVERLAP=on) against one slide at a time (off)."""
    inputs, key, total = _inputs(work, n_slides, slide_mb, "overlap")
    runs: dict[str, list[dict]] = {"a": [], "b": []}
    stages: dict[str, list[dict]] = {"a": [], "b": []}

    def measured(k: str, mode: str) -> dict:
        out = work / f"out-{mode}"
        r = run(inputs, out, key, 1, target, overlap=mode)
        runs[k].append(r)
        if r["rc"] == 0:
            stages[k].append(_slide_stages(out))
        return r

    res = pairs(lambda: measured("a", "off"), lambda: measured("b", "on"), n_pairs, "overlap off", "overlap on")
    for k in ("a", "b"):
        res[k].update({f: statistics.median(r[f] for r in runs[k]) for f in ("coordinator", "children", "cores")})
        res[k]["stages"] = {s: statistics.median(st[s] for st in stages[k]) for s in stages[k][0]} if stages[k] else {}
    speedup = 1 / res["ratio"]
    for label, k in (("overlap off", "a"), ("overlap on ", "b")):
        st = ", ".join(f"{s} {v:.2f} s" for s, v in res[k]["stages"].items())
        print(f"{label}  {fmt(res[k])}  ({total / res[k]['wall'] / 1e6:.0f} MB/s; {res[k]['cores']:.2f} cores busy; a slide: {st})")
    print(f"  speed-up of the overlap (median of {n_pairs} pairs) {speedup:.2f}x  (load {res['load']:.1f})")
    return {
        "target": target,
        "slides": n_slides,
        "total_bytes": total,
        "overlap_off": res["a"],
        "overlap_on": res["b"],
        "speedup": speedup,
        "pairs": n_pairs,
        "walls_off": res["walls_a"],
        "walls_on": res["walls_b"],
        "load": res["load"],
    }


def bench(n_slides: int, slide_mb: float, n_pairs: int, work: Path, target: str = "native") -> dict:
    inputs, key, total = _inputs(work, n_slides, slide_mb, "batch")
    runs: dict[str, list[dict]] = {"a": [], "b": []}

    def measured(k: str, workers: int) -> dict:
        r = run(inputs, work / f"out{workers}", key, workers, target)
        runs[k].append(r)
        return r

    res = pairs(lambda: measured("a", 1), lambda: measured("b", 2), n_pairs, "--workers 1", "--workers 2")
    for k in ("a", "b"):  # medians of what _common.pairs does not summarise
        res[k].update({f: statistics.median(r[f] for r in runs[k]) for f in ("coordinator", "children", "cores")})
    speedup = 1 / res["ratio"]
    print(f"--workers 1  {fmt(res['a'])}  ({total / res['a']['wall'] / 1e6:.0f} MB/s)")
    print(f"--workers 2  {fmt(res['b'])}  ({total / res['b']['wall'] / 1e6:.0f} MB/s)")
    for label, k in (("--workers 1", "a"), ("--workers 2", "b")):
        print(f"  {label}: {_split(res[k], n_slides)}")
    # the best --workers 2 could do here: its CPU spread over every core, nothing else running
    ncpu = os.cpu_count() or 1
    cpu2 = res["b"]["user"] + res["b"]["sys"]
    ceiling = min(float(ncpu), res["a"]["wall"] * ncpu / cpu2) if cpu2 else 0.0
    print(
        f"  ceiling from CPU: --workers 1 wall {res['a']['wall']:.2f} s / (--workers 2 CPU {cpu2:.2f} s / {ncpu} cores) = {ceiling:.2f}x"
        f" (one worker keeps {res['a']['cores']:.2f} cores busy: {ncpu} / {res['a']['cores']:.2f} = {ncpu / max(res['a']['cores'], 1e-9):.2f}x if CPU were equal)"
    )
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
        "ceiling": ceiling,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slides", type=int, default=20)
    ap.add_argument("--slide-mb", type=float, default=100)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--target", choices=("native", "dicom"), default="native")
    ap.add_argument("--compare", choices=("workers", "overlap"), default=None, help="the A/B (default: overlap for dicom, workers for native)")
    args = ap.parse_args(argv)
    compare = args.compare or ("overlap" if args.target == "dicom" else "workers")
    work = Path(tempfile.mkdtemp(prefix="wsianon-bench-", dir=args.workdir))
    try:
        if compare == "overlap":
            r = bench_overlap(args.slides, args.slide_mb, args.pairs, work, args.target)
        else:
            r = bench(args.slides, args.slide_mb, args.pairs, work, args.target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return r


if __name__ == "__main__":
    main()
