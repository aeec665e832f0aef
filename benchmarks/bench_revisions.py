"""One revision against another: ``wsianon run --target native`` (or ``--target dicom``) of this working tree against the
same command running the code of a git revision (``git archive`` into a scratch folder, put first
on ``PYTHONPATH`` of the child), with ``cp`` + ``sync FILE`` as the floor; whole child processes,
alternating order, medians, and each run's stage timings from its report (less noise-sensitive
than wall time on a shared machine). The revision's optional C extension (the JPEG marker search)
is compiled into the scratch folder as its install would build it: before, the revision ran the
numpy fallback, and an A/B against a revision since the extension measured the extension too.

    python benchmarks/bench_revisions.py --base REV [--target native|dicom] [--size-gb 1] [--pairs 3] [--workdir DIR] [--json FILE]

Not a test: nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import child, compile_tree, fresh_out, load, make_svs, project_key, warm, wsianon_cmd  # noqa: E402

from bench_native import cp_fsync  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def export(rev: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    data = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=data, check=True)
    compile_tree(dest)  # both sides load bytecode, as installed (wsianon_cmd compiles this tree)
    if (dest / "wsianon" / "io" / "_markers.c").exists():
        # the revision's optional C extension, built as its install builds it: without it the
        # revision runs the numpy fallback, and the A/B measures the extension, not the change
        # (compiled here as setuptools would: the project's environment has no setuptools, pip
        # builds in an isolated one)
        import sysconfig

        io = dest / "wsianon" / "io"
        cc = (sysconfig.get_config_var("CC") or "cc").split()
        target = io / f"_markers{sysconfig.get_config_var('EXT_SUFFIX')}"
        flags = [*(sysconfig.get_config_var("CFLAGS") or "-O3").split(), *(sysconfig.get_config_var("CCSHARED") or "-fPIC").split()]
        cmd = [*cc, "-shared", *flags, f"-I{sysconfig.get_paths()['include']}", str(io / "_markers.c"), "-o", str(target)]
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not target.exists():
            print(f"note: {rev}'s C extension did not build: it runs the numpy marker search", file=sys.stderr)
    return dest


def run(src: Path, out: Path, key: Path, pythonpath: str | None, target: str = "native") -> dict:
    fresh_out(out)
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    r = child([*wsianon_cmd(), "run", "--target", target, str(src), "-o", str(out), "--key-file", str(key)], env=env)
    try:
        s = json.loads((out / "wsianon-report.json").read_text())["slides"][0]
        r["stages"], r["status"] = s.get("timings_s"), s.get("status")
    except (OSError, ValueError, KeyError, IndexError):
        r["stages"], r["status"] = None, "no report"
    fresh_out(out)
    if r["rc"] != 0:  # a run that failed or quarantined its slide is not a timing of the job
        raise SystemExit(f"wsianon run failed (rc {r['rc']}, slide status {r['status']}):\n{r['out'][-2000:]}")
    return r


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="git revision to compare against (e.g. main, HEAD~3)")
    ap.add_argument("--target", choices=("native", "dicom"), default="native")
    ap.add_argument("--size-gb", type=float, default=1.0)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="wsianon-bench-rev-", dir=args.workdir))
    try:
        base = export(args.base, work / "base")
        src = make_svs(work / "BENCH-CASE-0001.svs", args.size_gb)
        key = project_key(work)
        warm(src)
        res: dict[str, list] = {"cp": [], "base": [], "this": []}
        for i in range(args.pairs):
            order = ("cp", "base", "this") if i % 2 == 0 else ("cp", "this", "base")
            for k in order:
                if k == "cp":
                    r = cp_fsync(src, work / "copy.svs")
                else:
                    r = run(src, work / f"out-{k}", key, str(base) if k == "base" else None, args.target)
                r["load"] = load()
                res[k].append(r)
                print(k, f"wall {r['wall']:.2f} s, CPU {r['user'] + r['sys']:.2f} s, stages {r.get('stages')}, load {r['load']:.1f}", flush=True)
        summary = {}
        for k, rs in res.items():
            wall = statistics.median(r["wall"] for r in rs)
            cpu = statistics.median(r["user"] + r["sys"] for r in rs)
            summary[k] = {"wall": wall, "cpu": cpu}
        floor = summary["cp"]["wall"]
        for k in ("base", "this"):
            summary[k]["ratio_to_cp"] = summary[k]["wall"] / floor if floor else None
            print(f"{k:5s} median wall {summary[k]['wall']:.2f} s, CPU {summary[k]['cpu']:.2f} s, {summary[k]['ratio_to_cp']:.2f}x cp+fsync ({floor:.2f} s)")
        out = {"base": args.base, "target": args.target, "size_gb": args.size_gb, "runs": res, "summary": summary}
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
