"""--scheduler: slides run on a real Dask distributed cluster (a `dask scheduler` and two
`dask worker` processes on 127.0.0.1, started here and killed by PID)."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_subprocess, tree_hashes
from tests.test_jobs import _key, _make_archive

distributed = pytest.importorskip("distributed", reason="the 'distributed' package is a dependency; install it with make venv")
DASK = Path(sys.executable).parent / "dask"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONWARNINGS="ignore", DASK_DISTRIBUTED__WORKER__DAEMON="False")
    procs = [
        subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard", "--idle-timeout", "600"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]

    def worker():
        return subprocess.Popen(
            [str(DASK), "worker", addr, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard", "--death-timeout", "60"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    procs += [worker(), worker()]
    client = None
    try:
        client = distributed.Client(addr, timeout="60s")
        client.wait_for_workers(2, timeout=120)
        yield {"addr": addr, "client": client, "procs": procs, "worker": worker}
    finally:
        if client is not None:
            client.close()
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=30)


def _mapping(path: Path) -> list[tuple[str, str, str]]:
    with open(path, newline="") as fh:
        return sorted(tuple(r) for r in list(csv.reader(fh))[1:])


def _slides(report: Path) -> list[dict]:
    data = json.loads(report.read_text())
    out = []
    for s in data["slides"]:
        s = dict(s)
        s.pop("timings_s", None)
        out.append(s)
    return sorted(out, key=lambda s: s["slide"])


def test_dask_batch_equals_local_run(tmp_path, cluster):
    arch = tmp_path / "arch"
    _make_archive(arch, 6)
    key = _key(tmp_path)
    r1 = run_subprocess("run", arch, "-o", tmp_path / "local", "--key-file", key)
    assert r1.returncode == 0, r1.stderr
    r2 = run_subprocess("run", arch, "-o", tmp_path / "dask", "--key-file", key, "--scheduler", cluster["addr"])
    assert r2.returncode == 0, r2.stderr
    assert tree_hashes(tmp_path / "local").keys() == tree_hashes(tmp_path / "dask").keys()
    from wsianon.pipeline.record import CERT_JSON, RECORD_FILES

    # the report and the record carry run dates and timings; the slides themselves must be identical
    hl = {k: v for k, v in tree_hashes(tmp_path / "local").items() if k not in RECORD_FILES}
    hd = {k: v for k, v in tree_hashes(tmp_path / "dask").items() if k not in RECORD_FILES}
    assert hl == hd and len(hl) == 6  # the same outputs, byte for byte
    certs = [json.loads((tmp_path / d / CERT_JSON).read_text()) for d in ("local", "dask")]
    local_files, dask_files = (sorted((o["slide"], o["file"], o["sha256"]) for o in c["outputs"]) for c in certs)
    assert local_files == dask_files and len(local_files) == 6  # both certificates vouch for the same bytes
    ml, md = _mapping(tmp_path / "local.mapping.csv"), _mapping(tmp_path / "dask.mapping.csv")
    assert ml == md and len(ml) == 6
    assert _slides(tmp_path / "local" / "wsianon-report.json") == _slides(tmp_path / "dask" / "wsianon-report.json")
    # the coordinator owns the manifest: a re-run through the cluster sends nothing
    r3 = run_subprocess("run", arch, "-o", tmp_path / "dask", "--key-file", key, "--scheduler", cluster["addr"])
    assert r3.returncode == 0 and "6 slide(s) already done" in r3.stderr


def test_dask_lost_worker_slide_retried(tmp_path, cluster):
    client = cluster["client"]
    arch = tmp_path / "arch"
    _make_archive(arch, 6, size=(1536, 1536))
    key = _key(tmp_path)
    pids = client.run(os.getpid)  # worker address -> pid
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsianon.cli", "run", str(arch), "-o", str(tmp_path / "out"), "--key-file", str(key), "--scheduler", cluster["addr"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        for addr, keys in client.processing().items():
            if any(str(k).startswith("wsianon-slide-") for k in keys):
                victim = pids[addr]
                break
        time.sleep(0.01)
    assert victim is not None, "no slide was seen running on a worker"
    os.kill(victim, signal.SIGKILL)  # the worker is lost mid-slide
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    rows = _mapping(tmp_path / "out.mapping.csv")
    assert len(rows) == 6 and all(r[2] == "ok" for r in rows)
    report = json.loads((tmp_path / "out" / "wsianon-report.json").read_text())
    assert report["summary"]["ok"] == 6
    # a fresh worker replaces the killed one for later tests
    for p in cluster["procs"]:
        if p.pid == victim:
            p.wait(timeout=30)
    cluster["procs"].append(cluster["worker"]())
    client.wait_for_workers(2, timeout=120)


def _submitted(monkeypatch, tmp_path, cluster, send_key: bool) -> tuple[bytes, list[bytes], object]:
    """Run a 3-slide job on the real cluster through the Python API, recording every task's
    arguments as pickled for the scheduler (the spy calls the real ``Client.submit``)."""
    import pickle

    from wsianon.pipeline.jobs import JobConfig, run_job
    from wsianon.pipeline.keys import read_key

    arch = tmp_path / "arch"
    _make_archive(arch, 3)
    key_file = _key(tmp_path)
    sent: list[bytes] = []
    real = distributed.Client.submit

    def spy(self, fn, *args, **kw):
        sent.append(pickle.dumps((fn, args)))
        return real(self, fn, *args, **kw)

    monkeypatch.setattr(distributed.Client, "submit", spy)
    res = run_job(JobConfig(inputs=[arch], out=tmp_path / "out", key_file=key_file, scheduler=cluster["addr"], send_key=send_key))
    return read_key(key_file), sent, res


def test_dask_tasks_carry_the_key_file_path_not_the_key(monkeypatch, tmp_path, cluster):
    key, sent, res = _submitted(monkeypatch, tmp_path, cluster, send_key=False)
    assert len(sent) == 3
    for blob in sent:  # neither the key's bytes nor its hex reach the scheduler
        assert key not in blob and key.hex().encode() not in blob
        assert str(tmp_path / "job.key").encode() in blob  # the workers read it there
    assert [o.status.value for o in res.outcomes] == ["ok"] * 3
    # the outputs are those of a local run with the same key (the workers used the same key)
    r = run_subprocess("run", tmp_path / "arch", "-o", tmp_path / "local", "--key-file", tmp_path / "job.key")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.svs")) == sorted(p.name for p in (tmp_path / "local").glob("*.svs"))


def test_dask_send_key_sends_it(monkeypatch, tmp_path, cluster):
    """--send-key: the old way, for clusters without the key file at the same path (the spy above
    would see the key: this proves it can)."""
    key, sent, res = _submitted(monkeypatch, tmp_path, cluster, send_key=True)
    assert len(sent) == 3 and all(key in blob for blob in sent)
    assert [o.status.value for o in res.outcomes] == ["ok"] * 3


def test_worker_refuses_a_missing_or_other_key(tmp_path):
    """The worker side of a task: a key file it cannot read, or another key at the path, fails the
    slide with one line naming the file, never the key."""
    from wsianon.converters.base import SlideContext
    from wsianon.pipeline import workers as W
    from wsianon.pipeline.keys import key_fingerprint, read_key
    from wsianon.pipeline.model import Status
    from wsianon.profiles.policy import Policy

    class Src:
        format = "aperio"

    ctx = SlideContext(pseudonym="WSI-x", key=b"", policy=Policy())
    key_file = _key(tmp_path)
    key = read_key(key_file)
    o, plans = W.remote_process_keyed(Src(), ctx, "native", None, W.KeyByPath(str(tmp_path / "absent.key"), key_fingerprint(key)))
    assert o.status is Status.ERROR and "does not exist" in o.error and plans == []
    assert str(tmp_path) not in o.error  # the key file's path (an operator's home) stays out of the report
    o, _ = W.remote_process_keyed(Src(), ctx, "native", None, W.KeyByPath(str(key_file), key_fingerprint(b"another key of 32 bytes........")))
    assert o.status is Status.ERROR and "another key" in o.error
    assert key.hex() not in o.error


def test_send_key_without_scheduler_is_a_usage_error(tmp_path):
    r = run_subprocess("run", tmp_path, "-o", tmp_path / "out", "--send-key")
    assert r.returncode == 2 and "--send-key applies to --scheduler only" in r.stderr


def test_a_worker_under_its_nanny_runs_slides(tmp_path):
    """`dask worker ADDR` as the README shows it (with its nanny, whose worker process is daemonic):
    the decode probe forked its child through multiprocessing, which a daemonic process may not
    do, so every slide ended as an internal error (AssertionError; red team stop 38). The fixture
    above runs --no-nanny workers, which hid it."""
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["PYTHONWARNINGS"] = "ignore"
    common = dict(env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **common)]
    procs.append(subprocess.Popen([str(DASK), "worker", addr, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard", "--death-timeout", "60"], **common))
    try:
        with distributed.Client(addr, timeout="60s") as client:
            client.wait_for_workers(1, timeout=120)
            assert client.run(lambda: __import__("multiprocessing").current_process().daemon) == {w: True for w in client.scheduler_info()["workers"]}
        arch = tmp_path / "arch"
        _make_archive(arch, 2)
        r = run_subprocess("run", arch, "-o", tmp_path / "out", "--key-file", _key(tmp_path), "--scheduler", addr)
        assert r.returncode == 0, r.stdout + r.stderr
        assert [s["status"] for s in _slides(tmp_path / "out" / "wsianon-report.json")] == ["ok", "ok"]
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
