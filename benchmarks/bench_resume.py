"""Resume cost: re-run a finished N-slide job (default 1,000 tiny generated SVS slides)
and report the time per slide of the re-run (no slide is re-read beyond its stat).

    .venv/bin/python benchmarks/bench_resume.py [--n 1000] [--workers 2] [--repeats 3] [--workdir DIR]

``--workdir DIR``: the job (archive, key, OUT and its private files) is kept in DIR and reused by
the next call with the same DIR and ``--n`` (a 10,000-slide job takes minutes to make).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.svs_gen import write_svs  # noqa: E402


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wsianon.cli", *map(str, args)], capture_output=True, text=True, cwd=REPO)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size-gb", default=None, help="ignored (run_all passes it to every benchmark)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the job here and reuse it (same --n)")
    a = ap.parse_args()
    if a.workdir is not None:
        a.workdir.mkdir(parents=True, exist_ok=True)
        _bench(a, a.workdir.resolve())
        return
    with tempfile.TemporaryDirectory(prefix="wsianon-bench-resume-") as td:
        _bench(a, Path(td))


def _bench(a, tmp: Path) -> None:
    key, out, arch = tmp / "bench.key", tmp / "out", tmp / "archive"
    first = None
    proto = tmp / "proto.svs"
    if not (tmp / f"done-{a.n}").exists():
        write_svs(proto, size=(256, 256), levels=1, with_macro=False)
        data = proto.read_bytes()
        for i in range(a.n):
            d = arch / f"box{i // 100:03d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"slide{i:05d}.svs").write_bytes(data + f"#{i}".encode())
        assert _cli("key", "init", key).returncode == 0
        t0 = time.perf_counter()
        r = _cli("run", arch, "-o", out, "--key-file", key, "--workers", a.workers)
        first = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(f"first run failed:\n{r.stderr[-2000:]}")
        (tmp / f"done-{a.n}").touch()
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        r = _cli("run", arch, "-o", out, "--key-file", key, "--workers", a.workers)
        times.append(time.perf_counter() - t0)
        assert r.returncode == 0 and f"{a.n} slide(s) already done" in r.stderr, r.stderr[-2000:]
    t0 = time.perf_counter()
    _cli("--version")
    startup = time.perf_counter() - t0
    med = statistics.median(times)
    print(f"slides: {a.n} (tiny SVS, {proto.stat().st_size} bytes each), workers: {a.workers}")
    if first is not None:
        print(f"first run:  {first:.1f} s ({first / a.n * 1000:.1f} ms/slide)")
    print(
        f"re-run (resume, nothing to do), median of {a.repeats}: {med:.2f} s = {med / a.n * 1000:.2f} ms/slide "
        f"(of which CLI start-up {startup:.2f} s; {(med - startup) / a.n * 1000:.2f} ms/slide without it)"
    )


if __name__ == "__main__":
    main()
