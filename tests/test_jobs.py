"""Archive-scale jobs: the manifest, resume after kill -9, workers dying with the job,
stable pseudonyms, input selection, status, and the job-flow hardening bullets."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_subprocess
from tests.fixtures.svs_gen import write_svs

PY = sys.executable


def _make_archive(root: Path, n: int, size=(256, 256)) -> list[Path]:
    """n tiny, distinct SVS slides in two sub-folders (generated once, then copied)."""
    root.mkdir(parents=True, exist_ok=True)
    proto = [root.parent / f"proto{i}.svs" for i in range(2)]
    for i, p in enumerate(proto):
        if not p.exists():
            write_svs(p, size=(size[0] + 64 * i, size[1]), levels=1, with_macro=False)
    out = []
    for i in range(n):
        d = root / ("a" if i % 2 else "b")
        d.mkdir(exist_ok=True)
        dst = d / f"slide{i:02d}.svs"
        data = bytearray(proto[i % 2].read_bytes())
        # distinct content: an unused trailing byte run (a copy per slide)
        data += f"pad{i:04d}".encode()
        dst.write_bytes(bytes(data))
        out.append(dst)
    return out


def _key(tmp: Path) -> Path:
    k = tmp / "job.key"
    if not k.exists():
        r = run_subprocess("key", "init", k)
        assert r.returncode == 0, r.stderr
    return k


def _children(pid: int) -> list[int]:
    """Every descendant of pid (from /proc)."""
    parents: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
                parents[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out.extend(kids)
        frontier.extend(kids)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _mapping(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        return [r for r in csv.reader(fh)][1:]


def _no_tmp(*folders: Path) -> None:
    for f in folders:
        if f.exists():
            left = [p for p in f.rglob("*") if p.name.startswith(".wsianon-tmp-") or p.name.startswith(".tmp-")]
            assert not left, left


def _cmd(*args) -> list[str]:
    return [PY, "-m", "wsianon.cli", *[str(a) for a in args]]


def _done_count(db_path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT COUNT(*) FROM slides WHERE state='ok'").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _kill_points(seed: int, n: int, k: int) -> list[tuple[int, float]]:
    """Seeded random kill points: after `done` slides are committed, plus a few ms."""
    rnd = random.Random(seed)
    return [(rnd.randrange(1, n - 1), rnd.uniform(0.0, 0.15)) for _ in range(k)]


MODES = {
    # name: (extra args, number of slides, kill points)
    "copy": ([], 20, 2),
    "workers2": (["--workers", "2"], 20, 1),
    "in-place": (["--in-place"], 20, 1),
    "dicom": (["--target", "dicom", "--workers", "2"], 3, 1),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_kill9_then_resume_each_slide_done_once(tmp_path, mode):
    extra, n, kills = MODES[mode]
    arch = tmp_path / "arch"
    srcs = _make_archive(arch, n)
    key = _key(tmp_path)
    out = tmp_path / "out"
    mapping = tmp_path / "map.csv"
    if mode == "in-place":
        args = ["run", arch, "--key-file", key, "--mapping", mapping, *extra]
    else:
        args = ["run", arch, "-o", out, "--key-file", key, *extra]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    killed_any = False
    db_path = tmp_path / ("wsianon.wsianon-job.sqlite" if mode == "in-place" else "out.wsianon-job.sqlite")
    for done_at, extra_delay in _kill_points(sum(map(ord, mode)), n, kills):
        proc = subprocess.Popen(_cmd(*args), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kids: set[int] = set()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and _done_count(db_path) < done_at:
            kids.update(_children(proc.pid))
            time.sleep(0.02)
        time.sleep(extra_delay)
        if proc.poll() is not None:
            continue  # finished before this kill point
        kids.update(_children(proc.pid))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_any = True
        # no worker outlives the kill by more than a second
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.05)
        assert not [k for k in kids if _alive(k)], "workers outlived the killed job"
    assert killed_any, "no kill point landed inside the batch"
    r = subprocess.run(_cmd(*args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    rows = _mapping(mapping if mode == "in-place" else tmp_path / "out.mapping.csv")
    sources = [row[0] for row in rows]
    assert sorted(sources) == sorted(str(s.resolve()) for s in srcs)  # one row per source
    assert all(row[2] == "ok" for row in rows)
    outputs = [row[1] for row in rows]
    assert len(set(outputs)) == n
    if mode == "in-place":
        left = sorted(p.name for p in arch.rglob("*") if p.is_file())
        assert all(name.startswith("WSI-") and name.endswith(".svs") for name in left), left
        assert len(left) == n
        assert sorted(left) == sorted(outputs)
        assert not list(arch.rglob("*.wsianon-journal"))
        manifest = tmp_path / "wsianon.wsianon-job.sqlite"
    else:
        found = sorted(p.name for p in out.iterdir() if p.name.startswith("WSI-"))
        assert found == sorted(outputs)  # every slide done exactly once, nothing extra
        report = json.loads((out / "wsianon-report.json").read_text())
        assert sorted(s["slide"] + ("" if s["status"] == "ok" else "!") for s in report["slides"]) == sorted(o.split(".")[0] for o in outputs)
        assert report["summary"]["ok"] == n
        _no_tmp(out)
        manifest = tmp_path / "out.wsianon-job.sqlite"
    db = sqlite3.connect(manifest)
    states = db.execute("SELECT state, COUNT(*) FROM slides GROUP BY state").fetchall()
    assert states == [("ok", n)]
    db.close()


def test_resume_skips_done_and_report_is_cumulative(tmp_path, cli):
    arch = tmp_path / "arch"
    _make_archive(arch, 4)
    key = _key(tmp_path)
    out = tmp_path / "out"
    # first run: only folder a
    code, o, e = cli("run", arch / "a", "-o", out, "--key-file", key)
    assert code == 0, e
    code, o, e = cli("run", arch / "a", arch / "b", "-o", out, "--key-file", key, "--log", tmp_path / "job.log")
    assert code == 0, e
    assert "2 slide(s) already done" in e
    report = json.loads((out / "wsianon-report.json").read_text())
    assert report["summary"]["slides"] == 4 and report["summary"]["ok"] == 4
    assert report["job"]["key_fingerprint"].startswith("sha256:")
    assert len(_mapping(tmp_path / "out.mapping.csv")) == 4
    events = [json.loads(line) for line in (tmp_path / "job.log").read_text().splitlines()]
    assert [ev["event"] for ev in events].count("slide") == 2
    assert events[0]["already_done"] == 2
    assert (Path(str(tmp_path / "job.log")).stat().st_mode & 0o777) == 0o600
    assert ((tmp_path / "out.wsianon-job.sqlite").stat().st_mode & 0o777) == 0o600
    # status summarizes the manifest
    code, o, e = cli("status", out)
    assert code == 0 and "4 ok" in o and "sha256:" in o


def test_failed_left_alone_unless_retry_failed(tmp_path, cli):
    arch = tmp_path / "arch"
    _make_archive(arch, 2)
    bad = arch / "a" / "broken.svs"
    bad.write_bytes(b"II*\x00" + b"\x00" * 10)
    key = _key(tmp_path)
    out = tmp_path / "out"
    code, o, e = cli("run", arch, "-o", out, "--key-file", key)
    assert code == 1 and e.count("error:") == 1
    code, o, e = cli("run", arch, "-o", out, "--key-file", key)
    assert code == 1 and "error:" not in e  # not retried
    code, o, e = cli("run", arch, "-o", out, "--key-file", key, "--retry-failed")
    assert code == 1 and e.count("error:") == 1  # retried, still broken
    code, o, e = cli("status", out)  # captured (no terminal): the failure by its pseudonym
    assert code == 1 and "broken.svs" not in o and "failures:\n  WSI-" in o, o
    from wsianon.jobconsole import status_text

    assert "broken.svs" in status_text(out, sources=True)[0]  # on the user's own terminal: the source


def test_second_concurrent_run_refused(tmp_path, cli):
    arch = tmp_path / "arch"
    _make_archive(arch, 1)
    out = tmp_path / "out"
    lock = os.open(str(tmp_path / "out.wsianon-job.sqlite.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        r = run_subprocess("run", arch, "-o", out, "--key-file", _key(tmp_path))
        assert r.returncode != 0 and "another wsianon run" in r.stderr and "Traceback" not in r.stderr
    finally:
        os.close(lock)
    r = run_subprocess("run", arch, "-o", out, "--key-file", _key(tmp_path))
    assert r.returncode == 0, r.stderr


def test_stale_staging_removed_at_start(tmp_path, cli):
    arch = tmp_path / "arch"
    _make_archive(arch, 1)
    out = tmp_path / "out"
    stale = out / ".wsianon-tmp-WSI-dead-abc"
    stale.mkdir(parents=True)
    (stale / "half.svs").write_bytes(b"x" * 1000)
    code, o, e = cli("run", arch, "-o", out, "--key-file", _key(tmp_path))
    assert code == 0, e
    assert not stale.exists()


@pytest.mark.parametrize("how", ["relpath", "content"])
def test_moved_archive_same_pseudonyms(tmp_path, cli, how):
    a = tmp_path / "mnt1" / "archive"
    _make_archive(a, 3)
    key = _key(tmp_path)
    code, o, e = cli("run", a, "-o", tmp_path / "out1", "--key-file", key, "--pseudonym-from", how)
    assert code == 0, e
    b = tmp_path / "mnt2" / "archive"
    b.parent.mkdir()
    shutil.move(a, b)
    code, o, e = cli("run", b, "-o", tmp_path / "out2", "--key-file", key, "--pseudonym-from", how)
    assert code == 0, e
    names1 = sorted(p.name for p in (tmp_path / "out1").glob("WSI-*"))
    names2 = sorted(p.name for p in (tmp_path / "out2").glob("WSI-*"))
    assert names1 == names2 and len(names1) == 3
    # the job into out1, continued from the new place, recognises its slides
    code, o, e = cli("run", b, "-o", tmp_path / "out1", "--key-file", key, "--pseudonym-from", how)
    assert code == 0 and "3 slide(s) already done" in e
    rows = _mapping(tmp_path / "out1.mapping.csv")
    assert len(rows) == 3 and all(str(b) in r[0] for r in rows)
    # path mode differs after the move
    code, o, e = cli("run", b, "-o", tmp_path / "out3", "--key-file", key, "--pseudonym-from", "path")
    assert sorted(p.name for p in (tmp_path / "out3").glob("WSI-*")) != names1


def test_key_rules(tmp_path, cli):
    arch = tmp_path / "arch"
    _make_archive(arch, 1)
    # a --key-file that does not exist is an error, and is not created
    code, o, e = cli("run", arch, "-o", tmp_path / "out", "--key-file", tmp_path / "typo.key")
    assert code != 0 and "key init" in e and not (tmp_path / "typo.key").exists()
    assert not (tmp_path / "out").exists()
    # a world-readable key is refused
    k = _key(tmp_path)
    os.chmod(k, 0o644)
    code, o, e = cli("run", arch, "-o", tmp_path / "out", "--key-file", k)
    assert code != 0 and "readable by others" in e
    os.chmod(k, 0o600)
    # key init refuses to replace a key
    code, o, e = cli("key", "init", k)
    assert code != 0 and "already exists" in e
    code, o, e = cli("run", arch, "-o", tmp_path / "out", "--key-file", k)
    assert code == 0, e
    # the job refuses to continue with another key (fingerprint recorded, never the key)
    k2 = tmp_path / "other.key"
    assert cli("key", "init", k2)[0] == 0
    code, o, e = cli("run", arch, "-o", tmp_path / "out", "--key-file", k2)
    assert code != 0 and "another key" in e
    raw = (tmp_path / "out.wsianon-job.sqlite").read_bytes() + (tmp_path / "out" / "wsianon-report.json").read_bytes()
    assert k.read_text().strip().encode() not in raw


def test_strict_pseudonym_map(tmp_path, cli):
    arch = tmp_path / "arch"
    _make_archive(arch, 2)
    pmap = tmp_path / "map.csv"
    pmap.write_text("source,slide\nslide00.svs,CASE-0\n")
    code, o, e = cli("run", arch, "-o", tmp_path / "out", "--pseudonyms", pmap, "--strict", "--key-file", _key(tmp_path))
    assert code == 1 and "not in the pseudonym map" in e
    assert sorted(p.name for p in (tmp_path / "out").glob("*.svs")) == ["CASE-0.svs"]


def test_pseudonym_collision_refused_before_writing(tmp_path, cli):
    """Two different slides with one file name in two folders, one map entry, --overwrite:
    used to leave one output attributed to both sources with exit 0."""
    for d, sz in (("siteA", (256, 256)), ("siteB", (320, 256))):
        (tmp_path / d).mkdir()
        write_svs(tmp_path / d / "x.svs", size=sz, levels=1)
    pmap = tmp_path / "map.csv"
    pmap.write_text("source,slide\nx.svs,CASE-1\n")
    code, o, e = cli("run", tmp_path / "siteA", tmp_path / "siteB", "-o", tmp_path / "out", "--pseudonyms", pmap, "--overwrite", "--key-file", _key(tmp_path))
    assert code == 1
    assert e.count("pseudonym collision") == 2
    assert not list((tmp_path / "out").glob("CASE-1*"))
    assert not (tmp_path / "out.mapping.csv").exists() or not _mapping(tmp_path / "out.mapping.csv")


def test_non_utf8_file_name(tmp_path):
    """One non-UTF-8 file name used to crash the whole batch (UnicodeEncodeError in keys.py)."""
    arch = tmp_path / "arch"
    arch.mkdir()
    write_svs(arch / "ok.svs", size=(256, 256), levels=1)
    bad = os.path.join(os.fsencode(arch), b"caf\xe9-\xff.svs")
    shutil.copy(arch / "ok.svs", bad)
    with open(arch / "ok.svs", "ab") as fh:
        fh.write(b"distinct")
    r = run_subprocess("run", arch, "-o", tmp_path / "out", "--key-file", _key(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert len(list((tmp_path / "out").glob("WSI-*.svs"))) == 2
    raw = (tmp_path / "out.mapping.csv").read_bytes()
    assert b"caf\xe9-\xff.svs" in raw  # the mapping keeps the exact name
    # the name in any spelling (raw bytes, escaped, replaced) never reaches OUT; a bare "caf" could
    # occur by chance inside a hex digest of the certificate
    spellings = (b"caf\xe9", b"caf\\xe9", "caf\udce9".encode("utf-8", "surrogateescape"), "caf\ufffd".encode(), "café".encode(), b"caf?-")
    for p in (tmp_path / "out").iterdir():
        raw_out = p.read_bytes()
        assert not [s for s in spellings if s in raw_out], p.name


def test_private_files_inside_out_and_out_inside_input_refused(tmp_path, cli):
    arch = tmp_path / "arch"
    _make_archive(arch, 1)
    key = _key(tmp_path)
    out = tmp_path / "out"
    r = run_subprocess("run", arch, "-o", out, "--key-file", key, "--mapping", out / "x.csv")
    assert r.returncode != 0 and "--mapping" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    for extra, word in ((["--quarantine", out / "q"], "--quarantine"), (["--log", out / "l.jsonl"], "--log")):
        code, o, e = cli("run", arch, "-o", out, "--key-file", key, *extra)
        assert code != 0 and word in e and len(e.strip().splitlines()) == 1, e
    assert not out.exists()
    for o in (arch, arch / "a", arch / "a" / "deeper"):
        code, _, e = cli("run", arch, "-o", o, "--key-file", key)
        assert code != 0 and "inside, an input folder" in e, e
    assert not (arch / "a" / "deeper").exists()
    # nothing at all to read: no OUT, no report
    r = run_subprocess("run", tmp_path / "nonexistent", "-o", tmp_path / "x", "--key-file", key)
    assert r.returncode == 1 and "no such file" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_input_selection_from_file_include_exclude_and_skipped(tmp_path, cli):
    arch = tmp_path / "arch"
    srcs = _make_archive(arch, 6)
    (arch / "a" / "notes.txt").write_text("not a slide")
    (arch / "a" / "Jane Doe scan.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)
    os.mkfifo(arch / "b" / "pipe.svs")
    key = _key(tmp_path)
    code, o, e = cli("run", arch, "-o", tmp_path / "out", "--key-file", key, "--exclude", "a/*", "--exclude", "*.txt")
    assert code == 0, e
    assert len(list((tmp_path / "out").glob("WSI-*"))) == 3  # only folder b (the FIFO skipped, never opened)
    report = json.loads((tmp_path / "out" / "wsianon-report.json").read_text())
    assert report["summary"]["skipped_inputs"] == 1 and "regular" in report["skipped_inputs"][0]["reason"]
    # a folder's non-slide files are skipped (listed by a keyed label, never by name), not errors
    code, o, e = cli("run", arch / "a", "-o", tmp_path / "out2", "--key-file", key)
    assert code == 0, e
    rep = (tmp_path / "out2" / "wsianon-report.json").read_text()
    assert json.loads(rep)["summary"]["skipped_inputs"] == 2 and "Jane" not in rep and "notes.txt" not in rep, rep
    # --from-file with relative lines, --include
    lst = tmp_path / "list.txt"
    lst.write_text("# slides\n" + "\n".join(str(s.relative_to(tmp_path)) for s in srcs) + "\n\n")
    code, o, e = cli("run", "--from-file", lst, "--include", "slide0[0-3].svs", "-o", tmp_path / "out3", "--key-file", key)
    assert code == 0, e
    assert len(list((tmp_path / "out3").glob("WSI-*"))) == 4


def _unshare_ok() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _unshare_ok(), reason="needs a private mount namespace (unshare -m) to build a full and a read-only file system")
@pytest.mark.parametrize("fs", ["full", "readonly"])
def test_full_or_readonly_out_is_one_line(tmp_path, fs):
    """Disk full while the report/mapping is written, or OUT on a read-only mount:
    used to end in an OSError traceback."""
    arch = tmp_path / "arch"
    _make_archive(arch, 2)
    key = _key(tmp_path)
    out = tmp_path / "out"
    side = tmp_path / "side"
    out.mkdir()
    side.mkdir()
    if fs == "full":
        # OUT holds the slides but not the report; the mapping's folder is full
        mount = (
            f"mount -t tmpfs -o size=64k tmpfs {out} && mount -t tmpfs -o size=4k tmpfs {side} && dd if=/dev/zero of={side}/fill bs=1k count=8 2>/dev/null; "
        )
    else:
        mount = f"mount -t tmpfs tmpfs {out} && mount -o remount,ro {out} && "
    cmd = mount + " ".join(f"'{a}'" for a in _cmd("run", arch, "-o", out, "--key-file", key, "--mapping", side / "map.csv"))
    r = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    errs = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errs and all(("No space" in line or "Read-only" in line or "disk full" in line) for line in errs), r.stderr
    # the job is not lost: the manifest beside OUT holds the slides' states
    db = sqlite3.connect(tmp_path / "out.wsianon-job.sqlite")
    assert db.execute("SELECT COUNT(*) FROM slides").fetchone()[0] == 2
    db.close()


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path):
    arch = tmp_path / "arch"
    n = 24  # enough work left after the first slides for the interrupt to land in it
    _make_archive(arch, n)
    key = _key(tmp_path)
    out = tmp_path / "out"
    args = _cmd("run", arch, "-o", out, "--key-file", key, "--workers", "2")
    # the job gets Ctrl-C's default handling whatever this test runner inherited: a runner started
    # in the background by a shell ignores SIGINT, and its children would inherit that (Python
    # then installs no KeyboardInterrupt handler and the job ran to its end)
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    db_path = tmp_path / "out.wsianon-job.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        # a placed output, or a slide the manifest has done (a read can meet a locked database)
        if out.is_dir() and any(p.name.startswith("WSI-") for p in out.iterdir()):
            break
        try:
            db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=0.2)
            done = db.execute("SELECT COUNT(*) FROM slides WHERE state='ok'").fetchone()[0]
            db.close()
        except sqlite3.Error:
            done = 0
        if done >= 1:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the whole process group
    o, e = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.fail("the batch finished before the interrupt; cannot test Ctrl-C")
    assert proc.returncode == 130, e
    assert "Traceback" not in e and "finished in this run" in e and "resume" in e
    # the signal came as the first output appeared: that slide is placed and recorded whole
    # (signals wait for the commit), nothing in OUT is outside the record
    assert "not yet in the record" not in e and "NOT ready" not in e, e
    _no_tmp(out)
    r = run_subprocess("run", arch, "-o", out, "--key-file", key)
    assert r.returncode == 0, r.stderr
    assert len(_mapping(tmp_path / "out.mapping.csv")) == n


def test_batch_progress_bar_and_source_names_on_a_terminal(tmp_path):
    """The batch bar counts slides done/total; per-slide lines name the source on a terminal,
    the pseudonym when piped (as the report does)."""
    import io

    from rich.console import Console

    from wsianon.jobconsole import BatchConsole
    from wsianon.pipeline.jobs import JobConfig, run_job

    arch = tmp_path / "arch"
    _make_archive(arch, 3)
    key = _key(tmp_path)
    from tests.fixtures.helpers import PtyStream

    for terminal in (True, False):
        # a terminal is a real one (a pseudo-terminal): the choice follows the file descriptor
        pty_out = PtyStream() if terminal else None
        buf_out, buf_err = io.StringIO(), io.StringIO()
        out_c = Console(file=pty_out.file if pty_out else buf_out, force_terminal=terminal, width=200)
        err_c = Console(file=buf_err, force_terminal=terminal, width=200)
        bars = []
        with BatchConsole(out_c, err_c, quiet=False, json_out=False) as bc:

            def spy(kind, **info):
                bc(kind, **info)
                if kind == "slide":
                    bars.append(bc.progress.tasks[0].fields["slides"])  # noqa: B023  spy runs within this iteration only

            res = run_job(JobConfig(inputs=[arch], out=tmp_path / f"out{terminal}", key_file=key, workers=2), on_event=spy)
        assert res.exit_code == 0
        assert bars == ["1/3 slides", "2/3 slides", "3/3 slides"]
        assert bc.progress.tasks[0].completed == bc.progress.tasks[0].total  # bytes: all done
        if pty_out is not None:
            pty_out.close()
        text = pty_out.text() if pty_out is not None else buf_out.getvalue()
        if terminal:
            assert "arch/a/slide01.svs" in text and "arch/b/slide00.svs" in text
        else:
            assert "slide0" not in text and text.count("WSI-") >= 3


def test_killed_between_placing_and_commit_recovers(tmp_path, cli):
    """A run killed after a slide's verified outputs were placed (copy) or renamed
    (in-place) but before its row was committed: the next run settles it once."""
    arch = tmp_path / "arch"
    _make_archive(arch, 2)
    key = _key(tmp_path)
    out = tmp_path / "out"
    assert cli("run", arch, "-o", out, "--key-file", key, "--full-hash")[0] == 0
    before = sorted(p.name for p in out.glob("WSI-*"))
    db = sqlite3.connect(tmp_path / "out.wsianon-job.sqlite")
    assert all(len(h) == 64 for (h,) in db.execute("SELECT full_hash FROM slides"))
    db.execute("UPDATE slides SET state='running' WHERE id=1")
    db.execute("DELETE FROM files WHERE slide_id=1")
    db.commit()
    db.close()
    code, o, e = cli("run", arch, "-o", out, "--key-file", key)
    assert code == 0, e
    assert sorted(p.name for p in out.glob("WSI-*")) == before
    assert len(_mapping(tmp_path / "out.mapping.csv")) == 2
    # in place: the source was already verified and renamed to its pseudonym
    inpl = tmp_path / "inpl"
    _make_archive(inpl, 2)
    mapping = tmp_path / "inpl-map.csv"
    assert cli("run", inpl, "--in-place", "--key-file", key, "--mapping", mapping)[0] == 0
    names = sorted(p.name for p in inpl.rglob("WSI-*.svs"))
    db = sqlite3.connect(tmp_path / "wsianon.wsianon-job.sqlite")
    out_name = json.loads(db.execute("SELECT outputs FROM slides WHERE id=1").fetchone()[0])[0]
    db.execute("UPDATE slides SET state='running', entry=NULL, mapping_status=NULL WHERE id=1")
    db.execute("DELETE FROM files WHERE slide_id=1")
    db.commit()
    db.close()
    code, o, e = cli("run", inpl, "--in-place", "--key-file", key, "--mapping", mapping)
    assert code == 0, e
    assert sorted(p.name for p in inpl.rglob("WSI-*.svs")) == names  # not renamed a second time
    rows = _mapping(mapping)
    assert len(rows) == 2 and out_name in [r[1] for r in rows]


def test_identical_copies_collide_in_content_mode(tmp_path, cli):
    arch = tmp_path / "arch"
    arch.mkdir()
    write_svs(arch / "one.svs", size=(256, 256), levels=1)
    shutil.copy(arch / "one.svs", arch / "two.svs")
    code, o, e = cli("run", arch, "-o", tmp_path / "out", "--key-file", _key(tmp_path), "--pseudonym-from", "content")
    assert code == 1 and e.count("pseudonym collision") == 2
    assert not list((tmp_path / "out").glob("WSI-*"))
