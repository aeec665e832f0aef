"""Shared helpers of the benchmarks: slide generation, whole-process measurement of child
processes (wall time, user/system CPU and peak RSS from ``wait4``), alternating A/B pairs with
medians, and the load average at the time (the machine may be shared)."""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
WSIANON = [PY, "-m", "wsianon.cli"]
TILE = 256


def compile_tree(root: Path) -> None:
    """Compile the bytecode of the ``wsianon`` package under ``root`` (incremental), as an install
    from a wheel does: the measured processes then load it instead of compiling ~90 modules
    each (~0.2 s of CPU) — which an editable install under ``PYTHONDONTWRITEBYTECODE=1`` (this
    project's environments) otherwise would, on every start."""
    subprocess.run([PY, "-m", "compileall", "-q", str(root / "wsianon")], check=True, stdout=subprocess.DEVNULL)


_compiled = False


def wsianon_cmd() -> list[str]:
    """The command that runs this tree's ``wsianon`` (its bytecode compiled first, once)."""
    global _compiled
    if not _compiled:
        compile_tree(ROOT)
        _compiled = True
    exe = Path(PY).with_name("wsianon")
    return [str(exe)] if exe.exists() else WSIANON


def load() -> float:
    """1-minute load average (noise indicator: the benchmark host may be shared)."""
    return os.getloadavg()[0]


# Measures one command from a minimal launcher: ru_maxrss of a process started by exec includes
# the high-water RSS of the process that forked it (the kernel records the old address space's
# peak at exec), so launching straight from this (numpy-sized) process would inflate every figure.
# The launcher is ``python -S`` (about 7 MiB, reported as ``rss_floor_mib``); its fork+exec child
# is the measured command, reaped with wait4 (that process and the children it waited for).  Before
# reaping it, the launcher waits without reaping (waitid WNOWAIT) and reads /proc/PID/stat, which
# still gives that process's own CPU (utime, stime) apart from its reaped children's (cutime,
# cstime: a batch's workers and decode probes); -1 where there is no /proc.
_LAUNCHER = (
    "import os,sys,time\n"
    "t0=time.perf_counter()\n"
    "pid=os.fork()\n"
    "if pid==0:\n"
    "    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "os.waitid(os.P_PID,pid,os.WEXITED|os.WNOWAIT)\n"
    "dt=time.perf_counter()-t0\n"
    "try:\n"
    "    f=open('/proc/%d/stat'%pid).read().rsplit(')',1)[1].split()\n"
    "    tck=os.sysconf('SC_CLK_TCK')\n"
    "    own=(int(f[11])+int(f[12]))/tck; kids=(int(f[13])+int(f[14]))/tck\n"
    "except (OSError, IndexError, ValueError):\n"
    "    own=kids=-1.0\n"
    "_,st,ru=os.wait4(pid,0)\n"
    "os.write(int(sys.argv[1]), ('%r %r %r %r %r %r %r' % (os.waitstatus_to_exitcode(st), ru.ru_utime, ru.ru_stime, ru.ru_maxrss, dt, own, kids)).encode())\n"
)


def child(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run ``cmd`` to completion; wall time, CPU (user, sys) and peak RSS of that process
    (``ru_maxrss`` from ``wait4``: the largest of it and the children it reaped, e.g. the
    workers of ``--workers 2``), and of that CPU ``coordinator`` (the process's own) and
    ``children`` (the children it reaped)."""
    r, w = os.pipe()
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-S", "-c", _LAUNCHER, str(w), *cmd], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(w,)
    )
    os.close(w)
    out = p.stdout.read() if p.stdout else b""
    p.wait()
    wall = time.perf_counter() - t0
    info = os.read(r, 4096).decode().split()
    os.close(r)
    if p.stdout:
        p.stdout.close()
    text = out.decode("utf-8", "replace")[-2000:]
    if len(info) != 7:
        return {"wall": wall, "user": 0.0, "sys": 0.0, "rss_mib": 0.0, "coordinator": 0.0, "children": 0.0, "rc": p.returncode or 1, "out": text}
    rc, user, sys_, maxrss = int(info[0]), float(info[1]), float(info[2]), int(info[3])
    wall = float(info[4])  # fork to exit, measured by the launcher (its own start-up excluded)
    return {"wall": wall, "user": user, "sys": sys_, "rss_mib": maxrss / 1024, "coordinator": float(info[5]), "children": float(info[6]), "rc": rc, "out": text}


def rss_floor_mib() -> float:
    """Peak RSS reported for ``true``: the launcher's share in every ``rss_mib``."""
    return child(["true"])["rss_mib"]


def pairs(a, b, n: int, label_a: str = "A", label_b: str = "B", verbose: bool = True) -> dict:
    """Run ``a()`` and ``b()`` (each returns a ``child()`` dict) ``n`` times alternating
    (A B, B A, A B, ...: drift and cache warm-up hit both sides alike) and return the runs,
    the medians and the median of the per-pair ratios b/a."""
    runs_a, runs_b, loads = [], [], []
    for i in range(n):
        order = [(0, a), (1, b)] if i % 2 == 0 else [(1, b), (0, a)]
        got = {}
        loads.append(load())
        for k, fn in order:
            got[k] = fn()
            if got[k]["rc"] != 0:
                raise SystemExit(f"{label_a if k == 0 else label_b} failed (rc {got[k]['rc']}):\n{got[k]['out']}")
        runs_a.append(got[0])
        runs_b.append(got[1])
        if verbose:
            print(
                f"  pair {i + 1}/{n}: {label_a} {got[0]['wall']:.2f} s, {label_b} {got[1]['wall']:.2f} s"
                f"  (ratio {got[1]['wall'] / got[0]['wall']:.2f}, load {loads[-1]:.1f})",
                flush=True,
            )

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    return {
        "a": {k: med(runs_a, k) for k in ("wall", "user", "sys", "rss_mib")},
        "b": {k: med(runs_b, k) for k in ("wall", "user", "sys", "rss_mib")},
        "ratio": statistics.median(rb["wall"] / ra["wall"] for ra, rb in zip(runs_a, runs_b)),
        "ratio_of_medians": med(runs_b, "wall") / med(runs_a, "wall"),
        "walls_a": [r["wall"] for r in runs_a],
        "walls_b": [r["wall"] for r in runs_b],
        "load": statistics.median(loads),
    }


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


_TILES: list[bytes] | None = None


def _thumbnail(tiles: list[bytes], side: int, long_side: int = 768) -> np.ndarray:
    """The level-0 mosaic (tile ``i`` at row-major position ``i``, cycling ``tiles``) downsampled to
    ``long_side`` pixels: each tile box-averaged to 16 px, the mosaic then resized."""
    from PIL import Image

    small = [np.asarray(Image.open(io.BytesIO(t)).convert("RGB").reduce(TILE // 16)) for t in tiles]
    mosaic = np.empty((side * 16, side * 16, 3), np.uint8)
    for i in range(side * side):
        r, c = divmod(i, side)
        mosaic[r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] = small[i % len(small)]
    n = min(long_side, side * 16)
    return np.asarray(Image.fromarray(mosaic).resize((n, n), Image.Resampling.BOX))


def _level_tiles(tiles: list[bytes], side: int, down: int, quality: int = 90):
    """The tiles, row by row, of the pyramid level ``down`` (a power of two up to ``TILE``) times
    smaller than the level-0 mosaic of ``side`` x ``side`` tiles (tile ``i`` at row-major position
    ``i``, cycling ``tiles``): each level-0 tile box-averaged to ``TILE // down`` px and put in
    place, the part past the mosaic white; JPEG as level 0's.  A real scanner's pyramid: the
    level really is level 0 downsampled."""
    from PIL import Image

    px = TILE // down
    small = [np.asarray(Image.open(io.BytesIO(t)).convert("RGB").reduce(down)) for t in tiles]
    lw = -(-side * TILE // down)
    n = -(-lw // TILE)
    for r in range(n):
        for c in range(n):
            img = np.full((TILE, TILE, 3), 255, np.uint8)
            for dr in range(down):
                for dc in range(down):
                    br, bc = r * down + dr, c * down + dc
                    if br < side and bc < side:
                        img[dr * px : (dr + 1) * px, dc * px : (dc + 1) * px] = small[(br * side + bc) % len(small)]
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, "JPEG", quality=quality)
            yield buf.getvalue()


def make_svs(path: Path, size_gb: float, pyramid: bool = True) -> Path:
    """An Aperio-style BigTIFF: level 0 of ``size_gb`` GiB of 256-px JPEG tiles (64 distinct
    textured tiles cycled, ~30 KB each, so the tile count is that of a real slide of that size),
    a thumbnail, a label (LZW) and a macro, with identifying values in the descriptions.
    ``pyramid``: also the levels a scanner writes, each 4 times smaller than the one before, down to
    the first under 2,048 px (a 2 GiB slide: 4x, 16x, 64x; ~7 % more bytes), as a real Aperio slide
    has; without them (the figures before the fourteenth stop) every check that reads the slide
    small (the thumbnail's provenance, the record's picture) samples level 0."""
    import tifffile

    global _TILES
    if _TILES is None:
        _TILES = _jpeg_tiles(64)
    tiles = _TILES
    mean = sum(map(len, tiles)) / len(tiles)
    n_tiles = max(1, int(size_gb * 1024**3 / mean))
    side = int(np.ceil(np.sqrt(n_tiles)))
    w = h = side * TILE
    desc = (
        f"Aperio Image Library v12.0.15\r\n{w}x{h} ({TILE}x{TILE}) JPEG/RGB Q=90|AppMag = 40|MPP = 0.2500"
        "|ScanScope ID = BENCH-SCANNER-01|Filename = BENCH-CASE-0001|Date = 01/02/20|Time = 10:11:12|User = bench-user-uuid"
    )

    def gen(count):
        for i in range(count):
            yield tiles[i % len(tiles)]

    downs = []
    if pyramid:
        d = 4
        while d <= TILE and w // (d // 4) >= 2048:
            downs.append(d)
            d *= 4
    small = np.full((512, 1024, 3), 230, np.uint8)
    thumb = _thumbnail(tiles, side)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(gen(side * side), shape=(h, w, 3), dtype=np.uint8, tile=(TILE, TILE), compression="jpeg", photometric="rgb", description=desc, metadata=None)
        # the thumbnail is the slide downsampled, as scanners write it (the verifier proves it is)
        tw.write(
            thumb, compression="jpeg", photometric="rgb", description=desc.replace(f"{w}x{h}", f"{w}x{h} -> {thumb.shape[1]}x{thumb.shape[0]}"), metadata=None
        )
        for d in downs:
            lw = -(-w // d)
            tw.write(
                _level_tiles(tiles, side, d),
                shape=(lw, lw, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                compression="jpeg",
                photometric="rgb",
                description=desc.replace(f"{w}x{h} ({TILE}x{TILE})", f"{w}x{h} ({TILE}x{TILE}) -> {lw}x{lw}"),
                metadata=None,
            )
        tw.write(
            small[:256, :256], compression="lzw", photometric="rgb", description="Aperio Image Library v12.0.15\r\nlabel 256x256", metadata=None, subfiletype=1
        )
        tw.write(small, compression="jpeg", photometric="rgb", description="Aperio Image Library v12.0.15\r\nmacro 1024x512", metadata=None, subfiletype=9)
    return path


def warm(path: Path) -> None:
    """Read a file once so that every measured side starts from the same (warm) page cache."""
    with open(path, "rb") as fh:
        while fh.read(64 << 20):
            pass


def cached_mib(*paths: Path) -> float | None:
    """MiB of these files resident in the page cache (util-linux ``fincore``), None if unavailable."""
    exe = shutil.which("fincore")
    paths = [p for p in paths if p.exists()]
    if not exe or not paths:
        return None
    r = subprocess.run([exe, "-b", "-n", "-o", "RES", *map(str, paths)], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return sum(int(x) for x in r.stdout.split()) / 1024**2


def fmt(r: dict) -> str:
    return f"{r['wall']:7.2f} s  (user {r['user']:.2f} s, sys {r['sys']:.2f} s, peak RSS {r['rss_mib']:.0f} MiB)"


def project_key(work: Path) -> Path:
    """The benchmark's project key (an explicit --key-file must exist: created as `wsianon key init` does)."""
    from wsianon.pipeline.keys import init_key

    key = Path(work) / "key"
    if not key.exists():
        init_key(key)
    return key


def fresh_out(out: Path) -> None:
    """Remove OUT and every side file of its job (mapping, quarantine, job manifest, record cache,
    review sheet): a run into it is then a whole new job, not a resume that skips the work."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    for side in out.parent.glob(f"{out.name}.*"):
        if side.is_dir():
            shutil.rmtree(side, ignore_errors=True)
        else:
            side.unlink(missing_ok=True)
