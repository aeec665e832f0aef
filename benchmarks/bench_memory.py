"""Peak memory: ``wsianon run --target native`` on generated slides of several sizes (default
1 and 4 GiB), each a whole child process, peak RSS from ``wait4`` (``ru_maxrss``).  Goal: the
same within 10% whatever the slide size (bounded buffers).

    python benchmarks/bench_memory.py [--sizes-gb 1,4] [--target native] [--workdir DIR] [--json FILE]
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

from _common import child, fmt, load, make_svs, rss_floor_mib, wsianon_cmd, project_key, fresh_out  # noqa: E402


def bench(sizes: list[float], target: str, work: Path) -> dict:
    rows = []
    for gb in sizes:
        src = work / "BENCH-CASE-0001.svs"
        t0 = time.perf_counter()
        make_svs(src, gb)
        print(f"memory: generated {src.stat().st_size / 1e9:.2f} GB slide in {time.perf_counter() - t0:.1f} s (load {load():.1f})", flush=True)
        out = work / "out"
        fresh_out(out)
        r = child([*wsianon_cmd(), "run", "--target", target, str(src), "-o", str(out), "--key-file", str(project_key(work))])
        if r["rc"] != 0:
            raise SystemExit(f"wsianon run failed on the {gb} GB slide:\n{r['out']}")
        print(f"  {gb:g} GiB ({src.stat().st_size / 1e9:.2f} GB): {fmt(r)}", flush=True)
        rows.append({"size_gb": gb, "size_bytes": src.stat().st_size, **{k: r[k] for k in ("wall", "user", "sys", "rss_mib")}})
        shutil.rmtree(out, ignore_errors=True)
        src.unlink()
    floor = rss_floor_mib()
    sizes_txt = ", ".join(f"{r['size_gb']:g}" for r in rows)
    spread = max(r["rss_mib"] for r in rows) / min(r["rss_mib"] for r in rows) - 1
    print(f"peak RSS spread {spread * 100:.1f}% across {sizes_txt} GiB (goal <= 10%; launcher floor {floor:.0f} MiB)")
    return {"target": target, "rows": rows, "spread": spread, "launcher_floor_mib": floor}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes-gb", default="1,4")
    ap.add_argument("--target", default="native", choices=["native", "dicom"])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="wsianon-bench-", dir=args.workdir))
    try:
        r = bench([float(x) for x in args.sizes_gb.split(",")], args.target, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return r


if __name__ == "__main__":
    main()
