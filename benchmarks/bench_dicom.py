#!/usr/bin/env python3
"""Benchmark: ``wsianon run --target dicom`` (convert + de-identify + verify) against a bare
``WsiDicomizer.convert`` of the same generated SVS-like slide, measured in one run.

    python benchmarks/bench_dicom.py [--size-gb 1.1] [--workdir DIR] [--keep]

The slide is an Aperio-style tiled JPEG TIFF (256 px tiles, distinct noise tiles cycled so that
generation is fast while the file is realistic in size and tile count), with label and macro.
Runs each side ``--repeat`` times, alternating, and compares the median times. Prints both wall times, the ratio (target: <= 1.2) and the peak resident memory of each phase
(sampled from /proc/self/statm).  Not a timed test.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TILE = 256


class PeakRss:
    """Samples this process's RSS every 20 ms; ``peak`` in bytes."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(0.02)

    def __enter__(self):
        self.peak = self._rss()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._rss())


def _jpeg_tiles(n: int, quality: int = 90) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(7)
    out = []
    y, x = np.mgrid[0:TILE, 0:TILE]
    for i in range(n):
        img = np.empty((TILE, TILE, 3), np.uint8)
        img[..., 0] = (180 + 50 * np.sin((x + i * 13) / 9.0)).clip(0, 255)
        img[..., 1] = (120 + 60 * np.cos((y + i * 7) / 11.0)).clip(0, 255)
        img[..., 2] = rng.integers(90, 250, (TILE, TILE))
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


def make_slide(path: Path, size_gb: float) -> Path:
    import tifffile

    tiles = _jpeg_tiles(64)
    mean = sum(map(len, tiles)) / len(tiles)
    n_tiles = int(size_gb * 1024**3 / mean)
    side = int(np.ceil(np.sqrt(n_tiles)))
    w = h = side * TILE
    desc = (
        f"Aperio Image Library v12.0.15\r\n{w}x{h} ({TILE}x{TILE}) JPEG/RGB Q=90|AppMag = 40|MPP = 0.2500"
        "|ScanScope ID = BENCH-SCANNER-01|Filename = BENCH-CASE-0001|Date = 01/02/20|Time = 10:11:12|User = bench-user-uuid"
    )

    def gen(count):
        for i in range(count):
            yield tiles[i % len(tiles)]

    small = np.full((512, 1024, 3), 230, np.uint8)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(gen(side * side), shape=(h, w, 3), dtype=np.uint8, tile=(TILE, TILE), compression="jpeg",
                 photometric="rgb", description=desc, metadata=None)
        tw.write(small[::2, ::2], compression="jpeg", photometric="rgb", description=desc.replace(f"{w}x{h}", "512x256"), metadata=None)
        tw.write(small[:256, :256], compression="lzw", photometric="rgb", description="Aperio Image Library v12.0.15\r\nlabel 256x256", metadata=None, subfiletype=1)
        tw.write(small, compression="jpeg", photometric="rgb", description="Aperio Image Library v12.0.15\r\nmacro 1024x512", metadata=None, subfiletype=9)
    return path


def _drop_cache(path: Path) -> None:
    with open(path, "rb") as fh:  # read once so both runs start from a warm page cache
        while fh.read(64 << 20):
            pass


def bench_bare(src: Path, out: Path) -> tuple[float, int]:
    from wsidicomizer import WsiDicomizer

    with PeakRss() as mem:
        t = time.perf_counter()
        WsiDicomizer.convert(src, out, include_label=False, include_overview=False, include_confidential=False)
        dt = time.perf_counter() - t
    return dt, mem.peak


def bench_wsianon(src: Path, out: Path, key: Path) -> tuple[float, int, dict]:
    from wsianon.pipeline.jobs import JobConfig, run_job

    with PeakRss() as mem:
        t = time.perf_counter()
        res = run_job(JobConfig(inputs=[src], out=out, target="dicom", key_file=key))
        dt = time.perf_counter() - t
    o = res.outcomes[0]
    return dt, mem.peak, {"status": o.status, "timings": o.timings, "notes": o.notes, "error": o.error,
                          "failed": [c.as_dict() for c in (o.verdict.checks if o.verdict else []) if not c.ok]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=1.1)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--repeat", type=int, default=2, help="alternating runs of each; medians are compared")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wsianon-bench-", dir=args.workdir))
    try:
        t = time.perf_counter()
        src = make_slide(work / "bench.svs", args.size_gb)
        print(f"generated {src.stat().st_size / 1024**3:.2f} GiB slide in {time.perf_counter() - t:.1f} s")
        _drop_cache(src)
        bare_t, ws_t, m_bare, m_ws = [], [], 0, 0
        for r in range(args.repeat):
            t_b, m_b = bench_bare(src, work / "bare")
            bare_bytes = sum(p.stat().st_size for p in (work / "bare").iterdir())
            shutil.rmtree(work / "bare")
            t_w, m_w, info = bench_wsianon(src, work / "out", work / "key")
            out_bytes = sum(p.stat().st_size for p in (work / "out").rglob("*.dcm"))
            shutil.rmtree(work / "out")
            bare_t.append(t_b)
            ws_t.append(t_w)
            m_bare, m_ws = max(m_bare, m_b), max(m_ws, m_w)
            print(f"  run {r + 1}: bare {t_b:.2f} s, wsianon {t_w:.2f} s ({', '.join(f'{k} {v:.2f}' for k, v in info['timings'].items())})")
        import statistics

        t_bare, t_ws = statistics.median(bare_t), statistics.median(ws_t)
        print(f"bare WsiDicomizer.convert : {t_bare:8.2f} s   peak RSS {m_bare / 1024**2:8.1f} MiB   output {bare_bytes / 1024**3:.2f} GiB")
        print(f"wsianon --target dicom    : {t_ws:8.2f} s   peak RSS {m_ws / 1024**2:8.1f} MiB   output {out_bytes / 1024**3:.2f} GiB")
        print(f"  status {info['status']}")
        if info["failed"] or info["error"]:
            print(f"  error: {info['error']}; failed checks: {info['failed']}")
        print(f"ratio wsianon / bare = {t_ws / t_bare:.3f} (medians; best-of ratio {min(ws_t) / min(bare_t):.3f})  (target <= 1.2)")
        return 0 if info["status"] == "ok" else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
