"""Native-target benchmark: wsianon vs `cp` on a generated Aperio slide of realistic size.

Builds an SVS whose level 0 has SIZE_GB of real JPEG tiles (one encoded tile
repeated, so generation is fast), plus thumbnail, label and macro with canary
metadata, then measures in one process:

* ``cp``                   — the floor for a copy-mode anonymizer (one read, one write)
* wsianon apply            — plan + streaming copy-with-patches
* wsianon run (verified)   — the whole job incl. verification (OpenSlide, tile
                              hashes of source and output, canary scan)
* wsianon in-place         — patch the file itself (O(metadata))

and prints ratios plus peak RSS.  Usage: python benchmarks/bench_native.py [--size-gb 2] [--workdir DIR]
"""

from __future__ import annotations

import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wsianon.converters.aperio import AperioConverter  # noqa: E402
from wsianon.converters.base import SlideContext  # noqa: E402
from wsianon.io.plan import apply_copy, apply_in_place  # noqa: E402
from wsianon.pipeline.jobs import JobConfig, run_job  # noqa: E402
from wsianon.profiles.policy import Policy  # noqa: E402


def make_big_svs(path: Path, size_gb: float, tile: int = 512) -> Path:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (tile, tile, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=95)
    jpeg = buf.getvalue()
    n_tiles = max(1, int(size_gb * 1024**3 / len(jpeg)))
    side = int(np.ceil(np.sqrt(n_tiles)))
    w = h = side * tile
    desc = (
        f"Aperio Image Library v12.0.15\r\n{w}x{h} ({tile}x{tile}) JPEG/RGB Q=95|AppMag = 40|MPP = 0.25"
        "|ScanScope ID = SS-BENCH-0001|Filename = CASE-BENCH-123|Date = 01/02/23|Time = 10:11:12|User = bench-user-42"
    )
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(
            (jpeg for _ in range(side * side)),
            shape=(h, w, 3),
            dtype=np.uint8,
            tile=(tile, tile),
            compression="jpeg",
            photometric="rgb",
            description=desc,
            metadata=None,
        )
        small = np.full((256, 256, 3), 200, np.uint8)
        tw.write(small, compression="jpeg", photometric="rgb", description=f"Aperio Image Library v12.0.15\n{w}x{h} -> 256x256 - |{desc.split('|', 1)[1]}", metadata=None)
        tw.write(small, compression="lzw", photometric="rgb", description="Aperio Image Library v12.0.15\nlabel 256x256", subfiletype=1, metadata=None)
        tw.write(small, compression="jpeg", photometric="rgb", description="Aperio Image Library v12.0.15\nmacro 256x256", subfiletype=9, metadata=None)
    return path


def timed(fn, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--workdir", type=Path, default=None, help="kept afterwards when given")
    args = ap.parse_args()
    size_gb = args.size_gb
    work = args.workdir or Path(tempfile.mkdtemp(prefix="wsianon-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "CASE-BENCH-123.svs"
    t0 = time.perf_counter()
    make_big_svs(src, size_gb)
    size = src.stat().st_size
    print(f"generated {size / 1e9:.2f} GB slide in {time.perf_counter() - t0:.1f}s at {src}")
    os.environ.setdefault("WSIANON_KEY_FILE", str(work / "key"))

    def cp():
        # cp, then fsync the copy: wsianon fsyncs its outputs before placing them
        dst = work / "cp.svs"
        subprocess.run(["cp", str(src), str(dst)], check=True)
        fd = os.open(dst, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        dst.unlink()

    conv = AperioConverter()
    ctx = SlideContext("BENCH", b"k" * 32, Policy())

    def apply_only():
        inv = conv.inspect(src)
        plan = conv.plan(inv, ctx)
        dst = work / "apply.svs"
        apply_copy(plan.files[0], dst)
        dst.unlink()

    def full_run():
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        res = run_job(JobConfig(inputs=[src], out=out, policy=Policy(overwrite=True)))
        assert res.exit_code == 0, [o.as_dict() for o in res.outcomes]

    t_cp = timed(cp)
    t_apply = timed(apply_only)
    t_run = timed(full_run)
    inplace = work / "inplace.svs"
    shutil.copyfile(src, inplace)
    inv = conv.inspect(inplace)
    plan = conv.plan(inv, ctx)
    os.sync()
    t0 = time.perf_counter()
    written = apply_in_place(plan.files[0], inplace)
    t_inplace = time.perf_counter() - t0
    inplace.unlink()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"slide size            {size / 1e9:8.2f} GB")
    print(f"cp                    {t_cp:8.2f} s   ({size / t_cp / 1e6:.0f} MB/s)")
    print(f"wsianon apply (copy)  {t_apply:8.2f} s   ratio vs cp {t_apply / t_cp:.2f}")
    print(f"wsianon run+verify    {t_run:8.2f} s   ratio vs cp {t_run / t_cp:.2f}")
    print(f"wsianon in-place      {t_inplace * 1000:8.1f} ms  ({written} bytes written)")
    print(f"peak RSS              {peak:8.0f} MiB")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
