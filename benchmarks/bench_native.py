"""Native target: ``wsianon run --target native`` (plan, copy, full verification) against ``cp``
followed by an fsync of the copy (``sync FILE``), whole processes, alternating pairs, medians;
then in-place (the patch itself, milliseconds, and the whole verified ``run --in-place``).

    python benchmarks/bench_native.py [--size-gb 2] [--pairs 4] [--cold-pairs N] [--flat] [--workdir DIR] [--json FILE]

``--cold-pairs``: the same comparison with the source's pages dropped before every run of
either side (a slide read from storage the first time, as in an archive migration).
``--floor-pairs``: ``cp``+fsync against the floor of any verified copy with a SHA-256
certificate (``_floor.py``: kernel copy, SHA-256 and xxh3 of the source read alongside, fsync,
one read-back) — how much of the ratio the machine leaves for verification proper.

``--flat``: the slide without its pyramid (level 0 only), as every figure before the fourteenth
stop was measured: the checks that read the slide small then sample level 0.

Not a test: nothing here is asserted.  The slide is generated (see ``_common.make_svs``).
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

from _common import cached_mib, child, fmt, load, make_svs, pairs, warm, wsianon_cmd, project_key, fresh_out  # noqa: E402


def cp_fsync(src: Path, dst: Path) -> dict:
    """``cp SRC DST`` then ``sync DST`` (fsync of that file): the floor for a copy-mode tool
    that, like wsianon, makes its output durable before placing it."""
    a = child(["cp", str(src), str(dst)])
    b = child(["sync", str(dst)])
    dst.unlink()
    return {
        "wall": a["wall"] + b["wall"],
        "user": a["user"] + b["user"],
        "sys": a["sys"] + b["sys"],
        "rss_mib": max(a["rss_mib"], b["rss_mib"]),
        "rc": a["rc"] or b["rc"],
        "out": a["out"] + b["out"],
    }


def wsianon_run(src: Path, out: Path, key: Path, *extra: str, env: dict | None = None) -> dict:
    fresh_out(out)  # a new job each time: a resumed one would skip the work
    return child([*wsianon_cmd(), "run", "--target", "native", str(src), "-o", str(out), "--key-file", str(key), *extra], env=env)


def drop_source_cache(src: Path) -> None:
    """Evict the (generated, our own) source from the page cache: a cold read, as from disk."""
    fd = os.open(src, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def hints_ab(src: Path, work: Path, n_pairs: int) -> dict:
    """The page-cache hints of the copy path (wsianon.io.cache) off against on, cold source each
    time (its pages dropped first), alternating pairs; and what is left resident after a run."""
    key, out = project_key(work), work / "out-hints"
    resident: dict[str, list] = {"off": [], "on": []}

    def run(mode: str) -> dict:
        drop_source_cache(src)
        r = wsianon_run(src, out, key, env={**os.environ, "WSIANON_CACHE_HINTS": mode})
        resident[mode].append((cached_mib(src), cached_mib(*out.glob("*.svs"))))
        return r

    res = pairs(lambda: run("off"), lambda: run("on"), n_pairs, "hints off", "hints on")
    shutil.rmtree(out, ignore_errors=True)
    med = lambda xs: statistics.median(x for x in xs if x is not None) if any(x is not None for x in xs) else None  # noqa: E731
    cache = {m: {"source_mib": med([a for a, _ in v]), "output_mib": med([b for _, b in v])} for m, v in resident.items()}
    print(f"hints off (cold src)  {fmt(res['a'])}")
    print(f"hints on  (cold src)  {fmt(res['b'])}")
    print(
        f"  on/off ratio (median of {n_pairs} pairs) {res['ratio']:.3f}; resident after a run: "
        f"off {cache['off']}, on {cache['on']} MiB (load {res['load']:.1f})"
    )
    return {
        "off": res["a"],
        "on": res["b"],
        "ratio_on_off": res["ratio"],
        "walls_off": res["walls_a"],
        "walls_on": res["walls_b"],
        "resident_after_run": cache,
        "load": res["load"],
    }


def cold_ab(src: Path, work: Path, n_pairs: int) -> dict:
    """``cp``+fsync against ``wsianon run``, the source evicted from the page cache before each."""
    key, out = project_key(work), work / "out-cold"

    def cold(fn):
        drop_source_cache(src)
        return fn()

    res = pairs(
        lambda: cold(lambda: cp_fsync(src, work / "cp.svs")), lambda: cold(lambda: wsianon_run(src, out, key)), n_pairs, "cp+fsync (cold)", "wsianon (cold)"
    )
    shutil.rmtree(out, ignore_errors=True)
    print(f"cp + fsync, cold src  {fmt(res['a'])}")
    print(f"wsianon, cold src     {fmt(res['b'])}")
    print(f"  ratio, source not cached (median of {n_pairs} pairs) {res['ratio']:.2f}  (load {res['load']:.1f})")
    warm(src)
    return {"cp_fsync": res["a"], "run_verify": res["b"], "ratio": res["ratio"], "walls_cp": res["walls_a"], "walls_run": res["walls_b"], "load": res["load"]}


def in_place(src: Path, work: Path, repeat: int) -> dict:
    """The in-place patch (plan once, then ``apply_in_place`` on fresh copies, in this process),
    and one whole ``wsianon run --in-place`` (which verifies, so it reads the file)."""
    from wsianon.converters.aperio import AperioConverter
    from wsianon.converters.base import SlideContext
    from wsianon.io.plan import apply_in_place
    from wsianon.profiles.policy import Policy

    conv = AperioConverter()
    ctx = SlideContext("BENCH", b"k" * 32, Policy())
    # the slide in a folder of its own: an in-place run's private files (mapping, job manifest)
    # may not lie beside the slides it patches
    (work / "inplace").mkdir(exist_ok=True)
    target = work / "inplace" / "inplace.svs"
    times, written = [], 0
    for _ in range(repeat):
        shutil.copyfile(src, target)
        plan = conv.plan(conv.inspect(target), ctx)
        os.sync()
        t0 = time.perf_counter()
        written = apply_in_place(plan.files[0], target)
        times.append(time.perf_counter() - t0)
    target.unlink()
    shutil.copyfile(src, target)
    os.sync()
    whole = child(
        [*wsianon_cmd(), "run", "--in-place", str(target), "--key-file", str(project_key(work)), "--mapping", str(work / "inplace.mapping.csv")], cwd=work
    )
    shutil.rmtree(work / "inplace", ignore_errors=True)  # the patched (renamed) copy
    if whole["rc"] != 0:
        raise SystemExit(f"wsianon run --in-place failed:\n{whole['out']}")
    return {"patch_ms": statistics.median(times) * 1000, "bytes_written": written, "run": whole}


def floor_ab(src: Path, work: Path, n_pairs: int) -> dict:
    """``cp``+fsync against ``_floor.py`` (copy, SHA-256 while copying, fsync, read-back)."""
    dst = work / "floor.svs"

    def floor() -> dict:
        r = child([sys.executable, str(Path(__file__).with_name("_floor.py")), str(src), str(dst)])
        dst.unlink(missing_ok=True)
        return r

    res = pairs(lambda: cp_fsync(src, work / "cp.svs"), floor, n_pairs, "cp+fsync", "verified-copy floor")
    print(f"cp + fsync            {fmt(res['a'])}")
    print(f"verified-copy floor   {fmt(res['b'])}")
    print(f"  floor ratio (median of {n_pairs} pairs) {res['ratio']:.2f}  (load {res['load']:.1f})")
    return {"cp_fsync": res["a"], "floor": res["b"], "ratio": res["ratio"], "walls_cp": res["walls_a"], "walls_floor": res["walls_b"], "load": res["load"]}


def bench(size_gb: float, n_pairs: int, work: Path, hint_pairs: int = 0, cold_pairs: int = 0, floor_pairs: int = 0, flat: bool = False) -> dict:
    src = work / "BENCH-CASE-0001.svs"
    t0 = time.perf_counter()
    make_svs(src, size_gb, pyramid=not flat)
    size = src.stat().st_size
    kind = "without a pyramid" if flat else "with a pyramid"
    print(f"native: generated {size / 1e9:.2f} GB slide {kind} in {time.perf_counter() - t0:.1f} s (load {load():.1f})", flush=True)
    key, out = project_key(work), work / "out"
    warm(src)
    res = pairs(lambda: cp_fsync(src, work / "cp.svs"), lambda: wsianon_run(src, out, key), n_pairs, "cp+fsync", "wsianon run+verify")
    # page-cache footprint of one run: what of the source and the output is resident afterwards
    cache = {"source_mib": cached_mib(src), "output_mib": cached_mib(*out.glob("*.svs"))}
    ip = in_place(src, work, repeat=3)
    r = {
        "size_bytes": size,
        "pyramid": not flat,
        "cp_fsync": res["a"],
        "run_verify": res["b"],
        "ratio": res["ratio"],
        "ratio_of_medians": res["ratio_of_medians"],
        "pairs": n_pairs,
        "walls_cp": res["walls_a"],
        "walls_run": res["walls_b"],
        "load": res["load"],
        "page_cache_after_run": cache,
        "in_place_patch_ms": ip["patch_ms"],
        "in_place_bytes": ip["bytes_written"],
        "in_place_run": ip["run"]["wall"],
    }
    print(f"slide                 {size / 1e9:7.2f} GB")
    print(f"cp + fsync            {fmt(res['a'])}  ({size / res['a']['wall'] / 1e6:.0f} MB/s)")
    print(f"wsianon run+verify    {fmt(res['b'])}")
    print(f"  ratio (median of {n_pairs} pairs) {res['ratio']:.2f}  (goal <= 1.5; ratio of medians {res['ratio_of_medians']:.2f}; load {res['load']:.1f})")
    cpu_cp, cpu_run = res["a"]["user"] + res["a"]["sys"], res["b"]["user"] + res["b"]["sys"]
    r["cpu_ratio"] = cpu_run / cpu_cp if cpu_cp else None
    print(f"  CPU (user+sys) {cpu_run:.2f} s against {cpu_cp:.2f} s: {r['cpu_ratio']:.2f}x (less sensitive to a shared machine than wall time)")
    print(f"  page cache after a run: source {cache['source_mib']} MiB, output {cache['output_mib']} MiB resident")
    print(f"in-place patch        {ip['patch_ms']:7.1f} ms ({ip['bytes_written']} bytes written; median of 3)")
    print(f"in-place run+verify   {ip['run']['wall']:7.2f} s  (whole process; peak RSS {ip['run']['rss_mib']:.0f} MiB)")
    if floor_pairs:
        r["floor"] = floor_ab(src, work, floor_pairs)
    if cold_pairs:
        r["cold"] = cold_ab(src, work, cold_pairs)
    if hint_pairs:
        r["cache_hints"] = hints_ab(src, work, hint_pairs)
    return r


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--workdir", type=Path, default=None, help="parent folder for the scratch files (same file system as the outputs)")
    ap.add_argument("--hint-pairs", type=int, default=0, help="also compare the page-cache hints off/on (cold source)")
    ap.add_argument("--cold-pairs", type=int, default=0, help="also compare with the source not in the page cache")
    ap.add_argument("--floor-pairs", type=int, default=0, help="also compare cp+fsync with the floor of a verified copy (_floor.py)")
    ap.add_argument("--flat", action="store_true", help="a slide without a pyramid (level 0 only), as every figure before the fourteenth stop")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="wsianon-bench-", dir=args.workdir))
    try:
        r = bench(args.size_gb, args.pairs, work, args.hint_pairs, args.cold_pairs, args.floor_pairs, flat=args.flat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return r


if __name__ == "__main__":
    main()
