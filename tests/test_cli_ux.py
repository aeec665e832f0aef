"""The CLI as a data manager meets it: the rough edges of everyday use (an MRXS named by its
folder, a slide named twice, a broken link in a folder, a stopped run, a shell pattern that
matched nothing), each a one-line answer that names the file and the reason."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from .fixtures.mrxs_gen import make_mrxs


def _mapping_sources(out: Path) -> list[str]:
    lines = (out.parent / f"{out.name}.mapping.csv").read_text().splitlines()[1:]
    return [ln.rsplit(",", 2)[0] for ln in lines]


def test_mrxs_slide_folder_stands_for_its_slide(cli, tmp_path):
    """An MRXS slide folder (NAME/ beside NAME.mrxs) given on its own is that slide, with the
    pseudonym the .mrxs file gets: it used to be walked as a folder of slides ('directory
    contains no slide', its data files listed as skipped)."""
    info = make_mrxs(tmp_path / "in", images=2, levels=1)
    out = tmp_path / "out"
    code, stdout, err = cli("run", info.folder, "-o", out, "--no-review-sheet")
    assert code == 0, stdout + err
    assert _mapping_sources(out) == [str(info.mrxs)]
    by_file = tmp_path / "out2"
    code, _, _ = cli("run", info.mrxs, "-o", by_file, "--no-review-sheet")
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("WSI-")) == sorted(p.name for p in by_file.iterdir() if p.name.startswith("WSI-"))
    code, stdout, err = cli("inspect", info.folder, "--json")
    assert code == 0, err
    assert [r["path"] for r in json.loads(stdout)] == [str(info.mrxs)]


def test_mrxs_data_file_says_to_give_its_slide(cli, tmp_path):
    """A file inside an MRXS slide folder given on its own: one line saying what to give instead.
    The console line names the path; the reason, which the shared report and certificate carry,
    does not name the slide (it used to: "a file of the MRXS slide S19-DoeJane.mrxs" in the report)."""
    from .fixtures.svs_gen import write_svs

    info = make_mrxs(tmp_path / "in", "S19-DoeJane", images=2, levels=1)
    good = write_svs(tmp_path / "in" / "good.svs", levels=1, size=(512, 384)).path
    out = tmp_path / "out"
    code, _, err = cli("run", info.folder / "Data0000.dat", good, "-o", out)
    assert code == 1
    line = next(ln for ln in err.splitlines() if "Data0000.dat" in ln)
    assert "give the slide's .mrxs file beside that folder" in line and str(info.folder) in line
    shared = [p for p in out.rglob("*") if p.is_file() and p.suffix in (".json", ".html", ".pdf", ".csv")]
    assert any(p.name == "wsianon-report.json" for p in shared), sorted(p.name for p in shared)
    for p in shared:
        assert b"DoeJane" not in p.read_bytes(), p.name


def test_same_slide_named_twice_is_processed_once(cli, tmp_path):
    """A slide named by its path, its ./ form, a symbolic link and a hard link to it is one
    slide: one output, one mapping row (a link used to give the same slide a second pseudonym,
    so the shared set held it twice)."""
    from .fixtures.svs_gen import write_svs

    d = tmp_path / "in"
    d.mkdir()
    slide = write_svs(d / "a.svs", levels=1, size=(512, 384)).path
    (d / "link.svs").symlink_to("a.svs")
    (d / "hard.svs").hardlink_to(slide)
    out = tmp_path / "out"
    code, stdout, err = cli("run", slide, d / "." / "a.svs", d / "link.svs", d / "hard.svs", "-o", out, "--no-review-sheet")
    assert code == 0, stdout + err
    assert len([p for p in out.iterdir() if p.name.startswith("WSI-")]) == 1
    assert _mapping_sources(out) == [str(slide)]
    # the same within a folder: the links beside the slide are not second slides
    out2 = tmp_path / "out2"
    code, stdout, err = cli("run", d, "-o", out2, "--no-review-sheet")
    assert code == 0, stdout + err
    assert len([p for p in out2.iterdir() if p.name.startswith("WSI-")]) == 1


def test_broken_symlink_is_named_as_such(cli, tmp_path):
    """A dangling symbolic link: named as one, in a folder (skipped) and named on its own (an
    error), not as a FIFO/device or 'No such file or directory' (ls shows it there)."""
    from .fixtures.svs_gen import write_svs

    d = tmp_path / "in"
    d.mkdir()
    write_svs(d / "a.svs", levels=1, size=(512, 384))
    (d / "gone.svs").symlink_to("moved-away.svs")
    out = tmp_path / "out"
    code, stdout, err = cli("run", d, "-o", out, "--no-review-sheet")
    assert code == 0, stdout + err
    reasons = [s["reason"] for s in json.loads((out / "wsianon-report.json").read_text())["skipped_inputs"]]
    assert reasons == ["a broken symbolic link (what it points to does not exist)"]
    code, _, err = cli("run", d / "gone.svs", "-o", tmp_path / "out2", "--no-review-sheet")
    assert code == 1
    assert "gone.svs: a broken symbolic link (what it points to does not exist)" in err


def test_sigterm_stops_the_job_as_ctrl_c_does(tmp_path, tmp_path_factory):
    """SIGTERM (kill, systemd, a batch scheduler) mid-run: a clean stop, exit 143, one line, no
    staging folder left in OUT, the run marked interrupted (not 'running') and the next run
    resumes.  Before, the process died at once: exit -15, a .wsianon-tmp-* folder in OUT and a
    manifest saying the run and a slide were still running."""
    import os
    import signal
    import subprocess
    import sys

    from .conftest import small_svs_folder

    src = small_svs_folder(tmp_path_factory, "in", 12)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "wsianon.cli", "run", str(src), "-o", str(out), "--no-review-sheet"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the first slide placed: the job is under way
    assert first.startswith("OK"), first
    proc.send_signal(signal.SIGTERM)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # hung: not left running after the test
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, stderr
    assert "interrupted:" in stderr and "run the same command again to resume" in stderr
    # one line, also piped (a log file): no hard wrap at 80 columns
    assert any(ln.startswith("interrupted:") and ln.endswith("run the same command again to resume") for ln in stderr.splitlines()), stderr
    assert "Traceback" not in stderr
    assert not [p.name for p in out.iterdir() if p.name.startswith(".wsianon-tmp-")]
    from wsianon.jobconsole import status_text

    text, _ = status_text(out)
    assert "(interrupted)" in text and "running" not in text, text
    res = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resuming:" in res.stderr
    assert len([p for p in out.iterdir() if p.name.startswith("WSI-")]) == 12


def test_pattern_that_matched_nothing_is_said_to_be_one(cli, tmp_path):
    """'wsianon run *.svs' where no .svs exists: the shell passes '*.svs' on as it is; the line
    says so (run, inspect, verify), instead of a bare 'no such file or directory'."""
    pattern = tmp_path / "*.svs"
    for args in (("run", pattern, "-o", tmp_path / "out"), ("inspect", pattern), ("verify", pattern)):
        code, _, err = cli(*args)
        assert code == 1, args
        assert "*.svs: no such file or directory (a pattern that matched no file" in err, (args, err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stop_signal_in_loggings_fork_handler_does_not_hang(sig, code):
    """Ctrl-C or SIGTERM arriving while logging's fork handler runs (each time a worker or a
    subprocess is forked): the KeyboardInterrupt raised there was ignored by Python and left
    logging's lock held, so the run went on and then hung (3 to 4 runs in 12 with a signal sent
    as the first slide was placed).  There the handler now only asks the job to stop at its next
    slide boundary."""
    import sys

    from wsianon.cli import _stop_on_signals
    from wsianon.pipeline.batch import STOP

    stopped = _stop_on_signals()
    try:
        handler = signal.getsignal(sig)
        assert callable(handler)
        ns: dict = {"__name__": "logging", "handler": handler, "sys": sys, "sig": sig}
        exec("def _releaseLock():\n    handler(sig, sys._getframe())\n", ns)
        try:
            ns["_releaseLock"]()
        except KeyboardInterrupt:  # (caught: an escaping KeyboardInterrupt would end the whole test session)
            pytest.fail("the signal raised inside logging's fork handler (ignored there, lock left held)")
        assert STOP.is_set()
        assert stopped() == code
        with pytest.raises(KeyboardInterrupt):  # anywhere else the signal interrupts at once
            handler(sig, sys._getframe())
    finally:
        stopped(restore=True)
    assert not STOP.is_set()


def test_stop_request_ends_the_job_at_the_next_slide_boundary(tmp_path, tmp_path_factory):
    """The backstop: a stop asked for (a signal that could not interrupt where it arrived) ends
    the job after the slide being committed, as Ctrl-C does: the others stay pending, the run
    is marked interrupted and the next run resumes."""
    from wsianon.pipeline.batch import STOP, JobInterrupted
    from wsianon.pipeline.jobs import JobConfig, run_job

    from .conftest import small_svs_folder

    src = small_svs_folder(tmp_path_factory, "in", 3)
    out = tmp_path / "out"

    def on_event(kind, **info):
        if kind == "slide":
            STOP.set()

    try:
        with pytest.raises(JobInterrupted) as exc:
            run_job(JobConfig(inputs=[src], out=out), on_event=on_event)
    finally:
        STOP.clear()
    assert (exc.value.done_now, exc.value.pending) == (1, 2)
    res = run_job(JobConfig(inputs=[src], out=out))
    assert res.exit_code == 0 and res.already_done == 1


def test_piped_lines_are_not_wrapped(cli, tmp_path):
    """Output piped to a file keeps each message on one line (rich wrapped at 80 columns when
    not a terminal: 'keep it private and backed\\nup', a split 'interrupted: ...' line)."""
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "project.key"
    deep.parent.mkdir(parents=True)
    code, stdout, _ = cli("key", "init", deep)
    assert code == 0
    assert len(stdout.splitlines()) == 1 and stdout.rstrip().endswith("keep it private and backed up"), stdout


def test_workers_never_more_than_slides(tmp_path, tmp_path_factory, monkeypatch, cli):
    """--workers 50 for 2 slides starts 2 worker processes: a fork pool starts all of its
    workers at once, and '--workers 100000' for two slides forked processes by the thousand
    until the machine ran out (seen).  A --workers above 1024 is a usage error (exit 2)."""
    import wsianon.pipeline.workers as W
    from wsianon.pipeline.jobs import JobConfig, run_job

    from .conftest import small_svs_folder

    started: list[int] = []
    real = W.ProcessPoolExecutor

    def recording(*args, **kw):
        started.append(kw["max_workers"])
        return real(*args, **kw)

    monkeypatch.setattr(W, "ProcessPoolExecutor", recording)
    src = small_svs_folder(tmp_path_factory, "in", 2)
    res = run_job(JobConfig(inputs=[src], out=tmp_path / "out", workers=50))
    assert res.exit_code == 0
    assert started and max(started) == 2
    code, _, err = cli("run", src, "-o", tmp_path / "out2", "--workers", "100000")
    assert code == 2 and "--workers" in err
    assert not (tmp_path / "out2").exists()


def test_help_names_the_exit_codes(cli):
    """run --help says what each exit status means, the stop signals' too."""
    code, out, _ = cli("run", "--help")
    assert code == 0
    flat = " ".join(out.split())
    for words in ("Exit 0: all clean", "2: usage error", "130/143: stopped by Ctrl-C/SIGTERM"):
        assert words in flat, words


def test_status_after_kill_9_does_not_say_running(tmp_path, tmp_path_factory):
    """After kill -9 (or a power cut) 'wsianon status OUT' said the last run was '(running)'
    although no process was left; it now says the run ended without finishing (the job lock,
    held by a live run, tells them apart)."""
    import os
    import subprocess
    import sys

    from wsianon.jobconsole import status_text
    from wsianon.pipeline.manifest import JobLock, manifest_path

    from .conftest import small_svs_folder

    src = small_svs_folder(tmp_path_factory, "in", 8)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "wsianon.cli", "run", str(src), "-o", str(out), "--no-review-sheet"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().startswith("OK")
    finally:
        proc.kill()
        proc.communicate()
    text, code = status_text(out)
    assert code == 1
    assert "(running)" not in text and "ended without finishing" in text, text
    lock = JobLock(manifest_path(out))  # the lock held, as a live run holds it: still said to be running
    lock.acquire()
    try:
        text, _ = status_text(out)
        assert "(running)" in text, text
    finally:
        lock.release()


def test_interrupt_says_when_out_holds_files_the_record_does_not_list(cli, tmp_path, tmp_path_factory, monkeypatch):
    """With --workers, a worker places a verified output before the job records it: a slide that
    finished as the job stopped can be whole in OUT and still pending.  The stop then says that OUT
    is not ready to share (it said "nothing partial was placed" and nothing more, while `certify
    --check` named the file as not in the certificate; review of stop 28).  Simulated here by a
    file placed in OUT at the moment the stop is asked for."""
    from wsianon.pipeline import batch as B
    from wsianon.pipeline.batch import STOP, JobInterrupted
    from wsianon.pipeline.jobs import JobConfig, run_job

    from .conftest import small_svs_folder

    src = small_svs_folder(tmp_path_factory, "in", 3)
    orig = B.W.run_serial

    def placing_then_stopping(items, target, dest, emit, on_submit):
        for k, res in enumerate(orig(items, target, dest, emit, on_submit)):
            yield res
            if k == 0:
                (dest_dir / "WSI-finished-unrecorded.svs").write_bytes(b"x")
                STOP.set()

    monkeypatch.setattr(B.W, "run_serial", placing_then_stopping)
    dest_dir = tmp_path / "api"
    try:
        with pytest.raises(JobInterrupted) as exc:
            run_job(JobConfig(inputs=[src], out=dest_dir))
    finally:
        STOP.clear()
    assert exc.value.unlisted == 1 and exc.value.pending >= 1
    dest_dir = tmp_path / "cli"
    try:
        code, _, err = cli("run", src, "-o", dest_dir, "--no-review-sheet")
    finally:
        STOP.clear()
    assert code == 130
    assert "1 file(s) in it are not yet in the record" in err and "NOT ready to share" in err
    # without such a file the stop says nothing partial was placed, as before
    monkeypatch.setattr(B.W, "run_serial", orig)


def test_an_option_that_takes_one_value_given_twice_is_refused(cli, tmp_path):
    """``-o A -o B`` used to run into B without a word (click keeps the last value): a job run
    into the wrong folder, or with the second of two label policies, is refused before anything
    is read or written, naming the option and not its values. Repeatable options and flags
    given twice still run."""
    from .fixtures.svs_gen import write_svs

    slide = write_svs(tmp_path / "Doe-Jane.svs", levels=1, size=(512, 384)).path
    a, b = tmp_path / "outA", tmp_path / "outB"
    for args, option in (
        (("-o", a, "-o", b), "'-o' / '--out'"),
        (("-o", a, "--label", "blank", "--label", "remove"), "'--label'"),
        (("-o", a, "--workers", "1", "--workers", "2"), "'--workers'"),
    ):
        code, stdout, err = cli("run", slide, *args, "--no-review-sheet")
        assert code == 2, stdout + err
        assert "given more than once" in err and option in err, err
        assert str(b) not in err and "blank" not in err
        assert not a.exists() and not b.exists()
    code, _, err = cli("verify", slide, "--source", slide, "--source", slide)
    assert code == 2 and "'--source'" in err and "given more than once" in err
    # repeatable options and repeated flags are not refused
    code, stdout, err = cli("run", slide, "-o", a, "--exclude", "*.ndpi", "--exclude", "*.scn", "--no-review-sheet", "--no-review-sheet")
    assert code == 0, stdout + err
    assert len([p for p in a.iterdir() if p.name.startswith("WSI-")]) == 1
