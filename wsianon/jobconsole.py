"""Console side of a job (used by cli.py): the batch progress bar, per-slide lines
with the source's display name (the user's own terminal only — the report keeps
pseudonyms), the ``--log`` JSON-lines event file, and ``wsianon status``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TextIO

from rich.console import Console
from wsianon.io.safetext import safe_text
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from wsianon.pipeline.model import Status


# one function turns any path or message into console text (control characters escaped, markup-free)
safe = safe_text


def on_terminal(stream) -> bool:
    """Whether ``stream`` (a file, or a rich Console's file) is a terminal: by its real file
    descriptor (``os.isatty``), never by what the environment claims.  rich's ``is_terminal``
    believes FORCE_COLOR and TTY_COMPATIBLE (set in many CI and container set-ups): with one of them
    ``run > run.log`` named the sources in run.log and wrote control codes into it (red team B, F4).
    A stream without a file descriptor (a StringIO, a test runner's capture) is not a terminal."""
    stream = getattr(stream, "file", stream)  # a Console: the file it writes to now
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False


class TerminalConsole(Console):
    """A rich Console that is a terminal only when its file is one (:func:`on_terminal`):
    FORCE_COLOR, TTY_COMPATIBLE=1 and TTY_INTERACTIVE=1 make no piped stream a terminal, so no
    colour, cursor or progress-bar control codes reach it; TTY_COMPATIBLE=0 still turns a terminal
    into plain output.  The colour system is decided again at every write: a console made while its
    stream was a terminal writes none once the stream is piped (sys.stdout replaced)."""

    @property
    def is_terminal(self) -> bool:
        return on_terminal(self.file) and self._environ.get("TTY_COMPATIBLE") != "0"

    @property
    def is_interactive(self) -> bool:
        return self.is_terminal and not self.is_dumb_terminal and self._environ.get("TTY_INTERACTIVE") != "0"

    @is_interactive.setter
    def is_interactive(self, value: bool) -> None:
        pass  # decided by the stream itself (rich sets it from TTY_INTERACTIVE at construction)

    @property  # type: ignore[override]
    def _color_system(self):
        if not self.is_terminal:
            return None
        return self.__dict__.get("_detected_color_system")

    @_color_system.setter
    def _color_system(self, value) -> None:
        self.__dict__["_detected_color_system"] = value


def _style(status: str) -> str:
    return {"ok": "green", "dry-run": "cyan", "failed": "red", "error": "red"}.get(status, "white")


class BatchConsole:
    """One batch-level bar (slides done/total, bytes, rate, ETA) + a line per finished slide."""

    def __init__(self, out: Console, err: Console, *, quiet: bool, json_out: bool, log: Path | None = None):
        self.out, self.err, self.json_out = out, err, json_out
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[slides]}"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=quiet,
            # no refresh thread: local workers are forked, and a fork must not copy a thread's locks
            auto_refresh=False,
        )
        self.task: TaskID | None = None
        self._last_refresh = 0.0
        self.total = 0
        self.done = 0
        self.inflight: dict[str, int] = {}  # slide display name -> bytes advanced so far
        self.log: TextIO | None = None
        self.log_path = log  # opened at the first event: after the job has checked where it may write

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)
        if self.log:
            self._log("end")
            self.log.close()

    def _log(self, event: str, **kw) -> None:
        if self.log is None and self.log_path is not None and event != "end":
            fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:  # private (it names the sources) also when it existed before, readable by others
                os.fchmod(fd, 0o600)
            except OSError:
                pass
            self.log = os.fdopen(fd, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
        if self.log:
            self.log.write(json.dumps({"t": round(time.time(), 3), "event": event, **kw}) + "\n")

    def _fields(self) -> str:
        return f"{self.done}/{self.total} slides"

    def __call__(self, kind: str, **info) -> None:
        if kind == "start":
            self.total = info["total"]
            self.task = self.progress.add_task("wsianon", total=max(info.get("bytes", 0), 1), slides=self._fields())
            self._log("start", slides=self.total, bytes=info.get("bytes", 0), already_done=info.get("already", 0), skipped_inputs=info.get("skipped", 0))
            if info.get("lost"):
                self._log("outputs-missing", slides=info["lost"])
                self.err.print(
                    f"{info['lost']} slide(s) done earlier have outputs missing or changed in OUT: processing them again", highlight=False, soft_wrap=True
                )
            if info.get("already"):
                msg = f"resuming: {info['already']} slide(s) already done, {self.total} to process"
                if info.get("already_failed"):
                    msg += f" ({info['already_failed']} failed in an earlier run and are left alone: --retry-failed tries them again)"
                self.err.print(msg, highlight=False, soft_wrap=True)
        elif kind == "slide-start":
            it = info["item"]
            self.inflight[it.display] = 0
            self._cur = it
            self._log("slide-start", slide=it.pseudonym, source=it.display, bytes=it.size)
            if self.task is not None:
                self.progress.update(self.task, description=safe(it.display)[-40:])
        elif kind == "bytes" and self.task is not None:
            it = getattr(self, "_cur", None)
            if it is not None and it.display in self.inflight:
                n = min(info["n"], max(it.size - self.inflight[it.display], 0))
                self.inflight[it.display] += n
                self.progress.advance(self.task, n)
        elif kind == "slide":
            self._slide(info)
        elif kind == "record":
            self._record(info["done"], info["total"])
        if self.task is not None and time.monotonic() - self._last_refresh > 0.1:
            self._last_refresh = time.monotonic()
            self.progress.refresh()

    def _record(self, done: int, total: int) -> None:
        """The record's images of slides no worker rendered (a serial job's): a line, then the bar."""
        if done == 0:
            from wsianon.pipeline.record import RENDERING

            self._log("record", slides=total)
            self.err.print(RENDERING.format(total), highlight=False, soft_wrap=True)
            if self.task is not None:
                self.progress.update(self.task, description="record", slides=f"0/{total} thumbnails")
        elif self.task is not None:
            self.progress.update(self.task, slides=f"{done}/{total} thumbnails")

    def _slide(self, info: dict) -> None:
        o = info["outcome"]
        disp = info.get("display") or str(info.get("source") or o.input_label)
        size = info.get("size") or 0
        if self.task is not None and size:
            # the slide's remaining bytes (a serial run advanced part of it already)
            advanced = self.inflight.pop(disp, 0)
            self.progress.advance(self.task, max(size - advanced, 0))
        if o.status in (Status.OK, Status.FAILED, Status.ERROR) and size:
            self.done += 1
        if self.task is not None:
            self.progress.update(self.task, slides=self._fields())
        self._log(
            "slide",
            slide=o.input_label,
            source=disp,
            status=o.status,
            error=o.error,
            outputs=o.outputs,
            seconds=round(o.timings.get("total", 0.0), 3),
            bytes=o.bytes_in,
        )
        style = _style(o.status)
        stream = self.err if o.status != Status.OK else self.out
        # the source's name on the user's own terminal; piped, captured or redirected output keeps
        # the pseudonym: decided for the stream the line is written to (`run > run.log` with stderr
        # a terminal writes the OK lines to the file)
        shown = disp if on_terminal(stream) else o.input_label
        line = f"[{style}]{o.status.upper():8}[/{style}] {safe(shown)}"
        if o.format:
            line += f" ({safe(o.format)})"
        if o.outputs:
            line += f" -> {safe(', '.join(o.outputs))}"
        if o.status == Status.DRY_RUN and info.get("source") is not None:
            line += f" <- {safe(info['source'])}"  # the source, on the console only (never in a report)
        if o.status in (Status.OK, Status.FAILED) and o.verdict is not None:
            line += verified_text(o.verdict)
        if o.status == Status.ERROR:
            where = disp
            if o.error_file is not None and info.get("source") is not None:
                # the instance the error is about, spelled as the user gave the slide's first file
                where = os.path.join(os.path.dirname(disp), os.path.relpath(o.error_file, os.path.dirname(info["source"])))
            self.err.print(f"[red]error:[/red] {safe(where)}: {safe(o.error)}", highlight=False, soft_wrap=True)
        if not self.json_out:
            stream.print(line, highlight=False, soft_wrap=True)


def verified_text(verdict) -> str:
    """A slide line's verification: the checks that ran and passed of those that ran, the residual
    identifiers, the failed checks, and the checks that did not run (a missing tool) and were
    accepted with --accept-unrun-checks: never counted as passed."""
    ran = [c for c in verdict.checks if not c.not_run]
    failed = [c.name for c in verdict.checks if not c.ok]
    accepted = [c.name for c in verdict.checks if c.not_run and c.ok]
    text = f"  verified: {sum(1 for c in ran if c.ok)}/{len(ran)} checks"
    if verdict.findings:
        text += f", {len(verdict.findings)} residual identifier(s)"
    if failed:
        text += f" (failed: {safe(', '.join(failed))})"
    if accepted:
        text += f"; {len(accepted)} NOT RUN, accepted by --accept-unrun-checks: {safe(', '.join(accepted))}"
    return text


def status_text(out: Path, sources: bool = False) -> tuple[str, int]:
    """``wsianon status OUT``: counts per state, failures with reasons, throughput.  Failures are
    named by their pseudonym; by the source's relative path (identifying) only with ``sources``
    (the CLI: its output is the user's own terminal), as ``run``'s per-slide lines are."""
    from wsianon.pipeline.manifest import Manifest, job_alive, manifest_path
    from wsianon.pipeline.selection import display

    man = Manifest(manifest_path(out), create=False)
    try:
        counts = man.counts()
        runs = man.runs()
        tot = man.totals()
        lines = [f"job: {out}", f"key fingerprint: {man.get_meta('key_fingerprint')}  pseudonyms from: {man.get_meta('pseudonym_from')}"]
        lines.append("slides: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none") + f"  (total {sum(counts.values())})")
        sk = man.skipped()
        if sk:
            lines.append(f"skipped inputs (not slides): {len(sk)}")
        if runs:
            last = runs[-1]
            state = last["status"]
            if state == "running" and not job_alive(manifest_path(out)):
                # its process is gone (kill -9, a power cut): nothing could record the end
                state = "ended without finishing: the process was killed; run the same command again to resume"
            lines.append(f"runs: {len(runs)}; last: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(last['started']))} ({state})")
        if tot["seconds"] > 0:
            lines.append(
                f"throughput: {tot['bytes_in'] / tot['seconds'] / 1e6:.1f} MB/s of slide time, {tot['slides'] / tot['seconds'] * 3600:.0f} slides/hour per worker"
            )
        fails = man.failures()
        if fails:
            lines.append("failures:")
            for pseudo, rel, reason in fails[:50]:
                name = display(rel) if sources and rel else pseudo or "?"
                lines.append(f"  {safe(name)}: {safe(reason)}")
            if len(fails) > 50:
                lines.append(f"  ... and {len(fails) - 50} more")
        code = 0 if not fails and not counts.get("pending") and not counts.get("running") else 1
        return "\n".join(lines), code
    finally:
        man.close()
