"""A batch as a resumable job: select inputs, consult the manifest, process what
is not done yet (here, in local workers, or on Dask), commit each slide's state,
report entry and mapping row in one transaction, then regenerate the cumulative
report and mapping CSV from the manifest.

``run_job`` (pipeline/jobs.py) calls ``run_batch``; see manifest.py for the database.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from wsianon.converters.base import SlideContext
from wsianon.errors import OutputError, UnsupportedFormat, WsianonError
from wsianon.io import digests as io_digests
from wsianon.io.atomic import STAGING_PREFIX, uninterrupted, write_atomic, write_private_if_changed
from wsianon.io.safefile import kind_of
from wsianon.io.safefile import same_file
from wsianon.io.safetext import os_reason, redact_paths
from wsianon.pipeline import jobs as J
from wsianon.pipeline import sharedout
from wsianon.pipeline import workers as W
from wsianon.pipeline.detect import SlideSource, expand_inputs, missing_reason
from wsianon.pipeline.keys import key_fingerprint, key_path, keyed_hex, load_or_create_key, pseudonym_from
from wsianon.pipeline.manifest import MANIFEST_SUFFIX, JobLock, Manifest, _sql_reason, fast_fingerprint, full_hash, manifest_path
from wsianon.pipeline.model import Outcome
from wsianon.pipeline.pseudonyms import load_pseudonym_map
from wsianon.pipeline.report import MANIFEST_NOTE, REPORT_NAME, build_report, policy_fields
from wsianon.pipeline.reportjson import report_bytes
from wsianon.pipeline.selection import Candidate, display, select_inputs
from wsianon.profiles.policy import PseudonymFrom, values
from wsianon.verify import mapnames
from wsianon.pipeline.model import DONE_STATES, STATE_OF_STATUS, State, Status

if TYPE_CHECKING:
    from wsianon.pipeline.record import ImageSeeder

STATE_OF = STATE_OF_STATUS
PSEUDONYM_MODES = values(PseudonymFrom)


# set by the CLI's SIGTERM handler: the job stops at the next slide boundary as on Ctrl-C (when the
# signal could not interrupt the run where it arrived)
STOP = threading.Event()


class JobInterrupted(Exception):
    """Ctrl-C: the job stopped cleanly; ``done_now`` slides finished in this run."""

    def __init__(self, done_now: int, done_total: int, pending: int, unlisted: int = 0):
        self.done_now, self.done_total, self.pending = done_now, done_total, pending
        # files in OUT the regenerated record does not list: a safety net (a worker leaves its
        # verified output in a staging folder that the coordinator places when it records the slide,
        # and the stop removes what is staged; a Dask task still running when the job stopped, or a
        # file put into OUT by hand, can still leave one)
        self.unlisted = unlisted
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        return f"interrupted: {self.done_now} slide(s) finished in this run, {self.done_total} done in all, {self.pending} left"


@dataclass
class Item:
    """One slide to process in this run."""

    src: SlideSource
    ctx: SlideContext
    pseudonym: str
    relpath: bytes
    target: str
    slide_id: int | None = None
    shown: bytes = b""
    size: int = 0
    full: str | None = None

    @property
    def display(self) -> str:
        return display(self.shown or self.relpath)


def _abs(p: Path) -> Path:
    return Path(os.path.abspath(p))


def check_locations(cfg, out: Path | None, mapping: Path | None, quarantine: Path | None) -> None:
    """Private files never inside the shareable OUT nor inside any other wsianon OUT; OUT never
    inside another wsianon OUT, never equal to or inside an input folder."""
    private = [
        ("--mapping", mapping),
        ("--quarantine", quarantine),
        ("--log", getattr(cfg, "log", None)),
        ("the job manifest", getattr(cfg, "manifest", None)),
    ]
    if out is None:
        sharedout.refuse_private_in_shared(private)
        return
    for what, p in private:
        if p is not None and sharedout.inside(p, out):
            raise WsianonError(p, f"{what} must be outside the output folder (OUT is shareable; this file is private)")
    sharedout.refuse_out_in_shared(out)
    sharedout.refuse_private_in_shared(private + [("the job manifest", manifest_path(out))], own=out)
    if out.exists() and not out.is_dir():
        raise OutputError(out, "output path exists and is not a folder")
    for inp in cfg.inputs:
        ip = Path(inp)
        if ip.is_dir() and sharedout.inside(out, ip):
            raise WsianonError(out, "output folder is the same as, or inside, an input folder; choose an OUT outside the inputs")
        refuse_input_in_out(ip, out)


def refuse_private_beside_patched(sel, private, inputs=()) -> None:
    """--in-place patches the slides where they are (their folder is the one to be shared): a
    private file (``(option, path)`` pairs: the mapping, the manifest beside it, the log) in the
    folder of a slide being patched, or inside a folder given as input, would be shared with them."""
    folders = {os.path.realpath(os.path.dirname(os.path.abspath(c.path))) for c in sel.candidates}
    roots = [os.path.realpath(i) for i in inputs if os.path.isdir(i)]
    for what, p in private:
        if p is None:
            continue
        home = os.path.realpath(os.path.dirname(os.path.abspath(p)))
        if home in folders or any(sharedout.inside(Path(home), Path(r)) for r in roots):
            raise WsianonError(
                p,
                f"{what} is private and would be written beside the slides --in-place patches (the folder to be shared); "
                "give --mapping PATH (and --log) in another folder",
            )


def refuse_input_in_out(inp: Path, out: Path) -> None:
    """A source inside OUT would stay there, identifying, beside the outputs (OUT is shared whole)."""
    if (inp.exists() or inp.is_symlink()) and sharedout.inside(inp, out):
        raise WsianonError(inp, "input lies inside the output folder; sources never go into OUT (it is shared whole): move them out first")


def refuse_foreign_out(out: Path, manifest: Path) -> None:
    """OUT is shared whole: a folder that already holds files and is no wsianon job's output folder
    (no job manifest beside it, no report in it) is refused, so that what is in OUT is what the job
    verified and certified (``-o`` naming a folder of other files would put them beside the outputs)."""
    try:
        # (a dead run's staging folders and temp files are ours: removed at start)
        entries = [e.name for e in os.scandir(out) if not e.name.startswith((STAGING_PREFIX, ".tmp-"))] if out.is_dir() else []
    except OSError:
        return  # an unreadable OUT fails where it is written, with its reason
    if entries and not manifest.exists() and REPORT_NAME not in entries:
        raise OutputError(
            out,
            f"the output folder already holds {len(entries)} file(s) and is not a wsianon output folder; choose a new or empty folder (OUT is shared whole)",
        )


def refuse_clashes(files: dict[str, Path | None]) -> None:
    """The job's own private files are different files: a ``--mapping`` or ``--log`` naming the key
    file or the manifest would replace or append to it (a lost key makes every pseudonym and UID
    of the project unreproducible; the manifest is the only record of which source is which)."""
    seen: dict[str, str] = {}
    for what, p in files.items():
        if p is None:
            continue
        real = os.path.realpath(p)
        if real in seen:
            raise WsianonError(p, f"{what} and {seen[real]} name the same file; each is a file of its own")
        seen[real] = what


def refuse_private_over_inputs(sel, private) -> None:
    """A private file we write (``(option, path)`` pairs) must not be one of the inputs: the mapping
    would replace a slide, the log append to it (inputs are never modified but in-place)."""
    for what, p in private:
        if p is None or not os.path.isfile(p):
            continue
        for c in sel.candidates:
            if same_file(p, c.path):
                raise WsianonError(p, f"{what} names an input file; the private file goes elsewhere (inputs are never modified)")


def _clean_staging(folder: Path | None) -> int:
    """Remove staging folders and temp files a dead run left (we hold the job lock)."""
    n = 0
    if folder is None or not folder.is_dir():
        return 0
    for e in os.scandir(folder):
        if e.name.startswith(STAGING_PREFIX) or (e.name.startswith(".tmp-") and e.is_file(follow_symlinks=False)):
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                try:
                    os.unlink(e.path)
                except OSError:
                    pass
            n += 1
    return n


def _policy_meta(cfg) -> str:
    p = cfg.policy
    meta = {"target": cfg.target, **policy_fields(p)}
    if p.coded_data != "sample":  # the report's policy says it of every slide (a job started before the option matches)
        meta["coded_data"] = p.coded_data
    if p.thumbnail != "keep":  # likewise (a job started before --thumbnail kept its thumbnails)
        meta["thumbnail"] = p.thumbnail
    if getattr(cfg, "pseudonyms", None):  # the map names the outputs: a changed map is a changed job
        meta["pseudonym_map"] = load_pseudonym_map(cfg.pseudonyms).digest()
    return json.dumps(meta, sort_keys=True)


def _check_meta(man: Manifest, cfg, kfp: str, mode: str, sel=None) -> bool:
    old = man.get_meta("key_fingerprint")
    if old is not None and old != kfp:
        raise WsianonError(man.path, f"this job was started with another key (fingerprint {old}, now {kfp}); use the same --key-file or a new OUT")
    oldm = man.get_meta("pseudonym_from")
    if oldm is not None and oldm != mode:
        raise WsianonError(man.path, f"this job derives pseudonyms from '{oldm}', not '{mode}'; use the same --pseudonym-from or a new OUT")
    oldp = man.get_meta("policy")
    changed = oldp is not None and oldp != _policy_meta(cfg)
    if changed and not cfg.policy.overwrite:
        raise WsianonError(
            man.path,
            "this job was started with other options (target, label, macro, thumbnail, dates, rename, pseudonym map, ...); "
            "use the same options, a new OUT, or --overwrite with all of the job's inputs",
        )
    if changed and sel is not None:
        left = _not_redone(man, sel)
        if left:
            # the report and the certificate state ONE policy for every slide they list: an output
            # made under the old options and not made again would be certified under the new ones
            raise WsianonError(
                man.path,
                f"--overwrite with other options: {left} slide(s) this job shared under its earlier options are not among this run's inputs, "
                "and the record would state the new options for them; give all of the job's inputs again, or use a new OUT",
            )
    man.set_meta("key_fingerprint", kfp)
    man.set_meta("pseudonym_from", mode)
    man.set_meta("policy", _policy_meta(cfg))
    return changed


def _not_redone(man: Manifest, sel) -> int:
    """How many slides shared earlier ('ok' in the manifest) none of this run's inputs names (by
    the source or one of its files): a run with other options would not make them again."""
    given = {os.fsencode(_abs(Path(c.path))) for c in sel.candidates}
    by_slide: dict[int, set[bytes]] = {}
    for path, (_s, _m, sid, _st) in man.file_states().items():
        by_slide.setdefault(sid, set()).add(path)
    n = 0
    for sid, src, _names, _files in man.done_outputs():
        if src in given or by_slide.get(sid, set()) & given:
            continue
        n += 1
    return n


BROKEN_LINK = "a broken symbolic link (what it points to does not exist)"


def _broken_link(p: Path) -> bool:
    """A symbolic link whose target is missing (a dangling link is no FIFO or device)."""
    return os.path.islink(p) and not os.path.exists(p)


def _error_outcome(label: str, reason: str, target: str, fmt: str | None = None) -> Outcome:
    o = Outcome(input_label=label, format=fmt, status=Status.ERROR, error=reason, target=target)
    return o


def _outcome_from_entry(e: dict) -> Outcome:
    return Outcome(
        input_label=e.get("slide", "?"),
        format=e.get("format"),
        target=e.get("target", "native"),
        status=e.get("status", "error"),
        outputs=list(e.get("outputs") or []),
        error=e.get("error"),
    )


def regenerate(man: Manifest, out: Path | None, mapping_path: Path | None, cfg, key: bytes | None = None, on_render=None, keep=None) -> Path | None:
    """Write OUT/wsianon-report.json and the mapping CSV from the manifest (cumulative), then the
    record (``on_render(done, total)``: the slides whose images it renders, see ``record.collect``;
    ``keep``: see ``record.write_record``)."""
    import csv
    import io

    rows = man.rows()
    if keep is not None:
        keep["rows"] = rows  # the job's result lists them too (nothing is written in between)
    entries = [r.entry for r in rows if r.entry is not None]
    report_path = None
    if out is not None or keep is not None:  # an in-place job writes no report; ``run --json`` prints it
        data = build_report([], cfg)
        counts: dict[str, int] = {}
        for e in entries:
            counts[e.get("status", "error")] = counts.get(e.get("status", "error"), 0) + 1
        skipped = man.skipped()
        data["summary"] = {
            "slides": len(entries),
            **counts,
            "bytes_in": sum(e.get("bytes_in") or 0 for e in entries),
            "bytes_written": sum(e.get("bytes_written") or 0 for e in entries),
            "skipped_inputs": len(skipped),
        }
        data["job"] = {
            "key_fingerprint": man.get_meta("key_fingerprint"),
            "pseudonym_from": man.get_meta("pseudonym_from"),
            "runs": len(man.runs()),
            # never the manifest's file name: it is OUT's own folder name (``-o exports/S19-4711_Doe_Jane``)
            "manifest": MANIFEST_NOTE,
        }
        # what the record (HTML report, certificate) reads: the job's key fingerprint and every run's dates
        data["key_fingerprint"] = man.get_meta("key_fingerprint")
        data["runs"] = [{"started": r["started"], "finished": r["finished"]} for r in man.runs()]
        data["slides"] = entries
        # files that are not slides: listed by a keyed label and our own reason, never by name
        data["skipped_inputs"] = [{"input": label, "reason": reason} for _, label, reason in skipped]
        if keep is not None:
            keep["report"] = data
    if out is not None:
        report_path = Path(out) / REPORT_NAME
        try:
            write_atomic(report_path, report_bytes(data, Path(out)))  # json.dumps(data, indent=2), unchanged entries from the record's cache
        except OSError as exc:
            raise OutputError(report_path, f"cannot write the report: {os_reason(exc)}") from None
    if mapping_path is not None:
        mrows = man.mapping_rows()
        if mrows:
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["source", "output", "status"])
            for s, o, st in mrows:
                w.writerow([os.fsdecode(s), o, st])
            for s, label, _reason in man.skipped():
                w.writerow([os.fsdecode(s), label, "skipped"])
            try:
                write_private_if_changed(mapping_path, buf.getvalue().encode("utf-8", "surrogateescape"))
            except OSError as exc:
                raise OutputError(mapping_path, f"cannot write the mapping: {os_reason(exc)}") from None
    if report_path is not None:
        from wsianon.pipeline.record import write_record

        assert out is not None, "the report is only written into OUT"
        write_record(out, key=key, on_render=on_render, keep=keep)  # HTML report + certificate, from the cumulative report and the outputs
    return report_path


def _inplace_recover(row, adopt: dict) -> None:
    """A killed in-place run: roll a patched-but-unverified source back from its
    journal; a source already verified and renamed (killed before its row was
    committed) is adopted: processed again under its row's pseudonym (a no-op
    patch and a fresh verification), so it ends with one mapping row."""
    from wsianon.io.plan import journal_path, rollback_journal

    src = row.path
    if journal_path(src).exists():
        try:
            rollback_journal(src)
        except (OSError, ValueError, KeyError):
            pass
    if not src.exists() and row.pseudonym:
        for cand in src.parent.glob(f"{row.pseudonym}.*"):
            if cand.is_file() and not cand.name.endswith(".wsianon-journal"):
                adopt[os.fsencode(_abs(cand))] = row


def run_batch(cfg, on_event: Callable[..., None] | None = None):
    emit = on_event or (lambda *a, **k: None)
    policy = cfg.policy
    if cfg.out is None and not (policy.in_place or policy.dry_run):
        raise WsianonError(None, "an output folder (-o OUT) is required unless --in-place or --dry-run")
    mode = getattr(cfg, "pseudonym_from", "relpath") or "relpath"
    if mode not in PSEUDONYM_MODES:
        raise WsianonError(None, f"--pseudonym-from must be one of {', '.join(PSEUDONYM_MODES)}")
    key = load_or_create_key(cfg.key_file)
    kfp = key_fingerprint(key)
    pmap = load_pseudonym_map(cfg.pseudonyms) if cfg.pseudonyms else None
    if getattr(cfg, "strict", False) and pmap is None:
        raise WsianonError(None, "--strict needs --pseudonyms MAP.csv")
    out = _abs(cfg.out) if cfg.out else None
    mapping_path: Path | None
    quarantine: Path | None
    if out is not None:
        mapping_path, quarantine = J.default_side_paths(out)
    else:
        mapping_path, quarantine = (Path.cwd() / "wsianon.mapping.csv" if policy.in_place else None), None
    if cfg.mapping:
        mapping_path = _abs(cfg.mapping)
    if cfg.quarantine:
        quarantine = _abs(cfg.quarantine)
    check_locations(cfg, out, mapping_path, quarantine)

    prune = [p for p in (out, quarantine) if p is not None]
    sel = select_inputs(
        list(cfg.inputs),
        from_file=getattr(cfg, "from_file", None),
        input_root=getattr(cfg, "input_root", None),
        include=getattr(cfg, "include", None),
        exclude=getattr(cfg, "exclude", None),
        prune=prune,
    )
    refuse_private_over_inputs(sel, (("--mapping", mapping_path), ("--log", getattr(cfg, "log", None))))
    if policy.in_place and not policy.dry_run:
        mp = getattr(cfg, "manifest", None) or (mapping_path.parent / f"wsianon{MANIFEST_SUFFIX}" if mapping_path is not None else None)
        refuse_private_beside_patched(sel, (("the mapping", mapping_path), ("the job manifest", mp), ("--log", getattr(cfg, "log", None))), list(cfg.inputs))
    if out is not None:
        for c in sel.candidates:
            if c.explicit:  # --from-file entries (a folder's files are found below the folder, checked above)
                refuse_input_in_out(Path(c.path), out)
    if not sel.candidates and not sel.not_regular and sel.missing:
        # nothing to read at all: refuse before anything (OUT, report) is created
        raise WsianonError(sel.missing[0], missing_reason(sel.missing[0]))

    use_manifest = not policy.dry_run
    man = lock = None
    if use_manifest:
        if out is not None:
            mpath = Path(getattr(cfg, "manifest", None) or manifest_path(out))
        else:
            assert mapping_path is not None, "without OUT a job is in-place (checked above): its mapping defaults to the working folder"
            mpath = Path(getattr(cfg, "manifest", None) or (mapping_path.parent / f"wsianon{MANIFEST_SUFFIX}"))
        refuse_clashes({"--mapping": mapping_path, "--log": getattr(cfg, "log", None), "the job manifest": mpath, "the key file": key_path(cfg.key_file)})
        if out is not None:
            refuse_foreign_out(out, mpath)
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(out, f"cannot create output folder: {os_reason(exc)}") from None
        lock = JobLock(mpath)
        lock.acquire()
    try:
        if use_manifest:
            man = Manifest(mpath)
        try:
            return _run(cfg, emit, key, kfp, mode, pmap, out, mapping_path, quarantine, sel, man)
        except sqlite3.Error as exc:  # the manifest's disk filled up or went read-only mid-run
            raise OutputError(mpath, f"cannot update the job manifest ({_sql_reason(exc)}); run again to resume") from None
    finally:
        if man is not None:
            man.close()
        if lock is not None:
            lock.release()


def _run(cfg, emit, key, kfp, mode, pmap, out, mapping_path, quarantine, sel, man):
    """One run of a job, in steps: recover what a dead run left, settle the inputs that need no
    work (missing, unchanged since done, not regular files), build the work items (pseudonyms,
    adoption of in-place outputs renamed before a kill), refuse pseudonym collisions, register the
    items in the manifest, process them (serial, local pool or Dask) committing each result, and
    regenerate the report."""
    changed = _check_meta(man, cfg, kfp, mode, sel) if man is not None else False
    r = _Run(cfg, emit, key, mode, pmap, out, quarantine, man)
    r.recover()
    if changed:
        r.redo_all()
    r.record_missing(sel)
    todo = r.not_done(sel)
    r.skip_not_regular(sel)
    items = r.items(todo)
    r.record_empty_folders(sel)
    items = r.register(r.refuse_collisions(items))
    emit(
        "start",
        total=len(items),
        bytes=sum(it.size for it in items),
        already=r.already,
        already_failed=r.already_failed,
        lost=r.lost,
        skipped=len(man.skipped()) if man else 0,
    )
    r.drive(items, mapping_path)
    return r.result(mapping_path, kfp)


class _Run:
    """The state of one run of a job (see :func:`_run`)."""

    def __init__(self, cfg, emit, key, mode, pmap, out, quarantine, man):
        self.cfg, self.emit, self.key, self.mode, self.pmap = cfg, emit, key, mode, pmap
        self.out, self.quarantine, self.man = out, quarantine, man
        self.policy = cfg.policy
        self.target = cfg.target
        self.dest = J.anon.Destinations(out, quarantine or Path("."))
        self.live: list[Outcome] = []  # outcomes of this run, in finishing order
        self.plans: list[dict] = []
        self.run_id = None
        self.adopt: dict[bytes, object] = {}  # in-place outputs renamed just before a kill -> their row
        self.requeued: set[bytes] = set()  # sources a dead run was processing
        self.already = self.already_failed = 0
        self.lost = 0  # slides done earlier whose outputs are gone from OUT: processed again
        self.roots_seen: set[int] = set()
        self.seeder: ImageSeeder | None = None  # once a worker sends rendered images
        # states a resume leaves alone (failed slides too, unless --retry-failed)
        self.leave = DONE_STATES if getattr(cfg, "retry_failed", False) else (*DONE_STATES, State.ERROR)

    def error(self, src_b, rel, pseudo, fmt, reason, path, c, label=None, display_rel=None) -> None:
        _record_error(self.man, self.run_id, src_b, rel, pseudo, fmt, reason, self.target, self.live, self.emit, path, c, label=label, display_rel=display_rel)

    def withdraw_earlier(self, src_b: bytes) -> None:
        """A slide processed again with --overwrite that is not shared now (an error, or
        quarantined): the outputs an earlier run placed for it leave OUT, so that OUT holds what
        the record certifies (an output made under other options — a macro kept — is not left
        behind under a report that says the slide failed)."""
        row = self.man.by_source(src_b) if self.man is not None else None
        if row is None or not row.outputs or self.out is None or self.policy.in_place:
            return
        for name in row.outputs:
            p = self.out / name
            if "/" in name or name in ("", ".", "..") or not sharedout.inside(p, self.out) or p.resolve() == Path(self.out).resolve():
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists() or p.is_symlink():
                p.unlink(missing_ok=True)

    def redo_all(self) -> None:
        """The options changed (--overwrite, every earlier slide among the inputs): what earlier runs
        shared leaves OUT now and each slide is queued again, so that OUT never holds an output made
        under the old options beside a record stating the new ones (also when this run is stopped
        before it made them again: the next run resumes them)."""
        man = self.man
        if man is None or self.out is None or self.policy.in_place:
            return  # (in-place: the outputs are the patched sources, each named again by this run)
        done = man.done_outputs()
        for _sid, src, _names, _files in done:
            self.withdraw_earlier(src)
        man.set_pending([sid for sid, *_ in done])
        self.requeued.update(src for _sid, src, *_ in done)

    def next_label(self, what: str = "input") -> str:
        return f"{what} #{len(self.live) + 1}"

    def recover(self) -> None:
        """Start the run in the manifest; slides a dead run was processing are queued again (and
        in-place outputs it renamed are adopted); stale staging folders are removed."""
        man = self.man
        if man is None:
            return
        self.run_id = man.start_run()
        for row in man.requeue_running():
            self.requeued.add(row.source)
            if self.policy.in_place:
                _inplace_recover(row, self.adopt)
        self.requeue_lost()
        _clean_staging(self.out)
        _clean_staging(self.quarantine)

    def requeue_lost(self) -> None:
        """Slides done earlier whose outputs are no longer in OUT as verified (deleted or moved by
        hand, OUT emptied, one instance of a DICOM folder gone, a file of another size) are
        processed again rather than counted as done: a resumed job's record would otherwise list
        files that do not exist, or leave out a slide that is not whole.  One ``stat`` per file;
        what is left of such a slide's outputs is replaced."""
        man, out = self.man, self.out
        if man is None or out is None or self.policy.in_place or self.policy.dry_run or self.policy.overwrite:
            return
        lost = [(sid, src) for sid, src, names, files in man.done_outputs() if names and not _outputs_whole(out, names, files)]
        if lost:
            man.set_pending([sid for sid, _ in lost])
            self.requeued.update(src for _, src in lost)
            self.lost = len(lost)

    def record_missing(self, sel) -> None:
        for m in sel.missing:
            self.error(os.fsencode(_abs(m)), None, None, None, missing_reason(m), m, None, label=self.next_label(), display_rel=os.fsencode(m))

    def not_done(self, sel) -> list[Candidate]:
        """Resume fast path: files of done slides, unchanged since, are not read again."""
        fstates = self.man.file_states() if (self.man is not None and not self.policy.overwrite) else {}
        todo: list[Candidate] = []
        for c in sel.candidates:
            st = fstates.get(os.fsencode(c.path))
            if st is not None and st[3] in self.leave and _unchanged(c.path, st):
                self.already += 1
                self.already_failed += st[3] == State.ERROR
                self.roots_seen.add(c.root)
                continue
            todo.append(c)
        return todo

    def skip_not_regular(self, sel) -> None:
        for c in sel.not_regular:
            broken = _broken_link(c.path)
            if c.explicit:  # named by the user: refused as an error (one line), never opened
                try:
                    reason = BROKEN_LINK if broken else f"is {kind_of(os.stat(c.path).st_mode)}, not a regular file: refused"
                except OSError as exc:
                    reason = f"cannot read: {os_reason(exc)}"
                self.error(os.fsencode(_abs(c.path)), c.relpath, None, None, reason, c.path, c, label=self.next_label(), display_rel=c.shown or None)
                continue
            label = "SKIP-" + keyed_hex(self.key, "skipped", c.relpath)[:12]
            if self.man is not None:
                self.man.add_skipped(os.fsencode(c.path), label, BROKEN_LINK if broken else "not a regular file (FIFO, device or socket); not opened")

    def items(self, todo: list[Candidate]) -> list[Item]:
        """Detect the slides among the inputs still to do and make one work item per slide."""
        by_path = {os.fsencode(c.path): c for c in todo}
        slides = expand_inputs([c.path for c in todo], self.policy.allow_generic) if todo else []
        if self.cfg.target == "dicom" and not self.policy.dry_run and any(s.error is None and not s.spec.is_dicom for s in slides):
            from wsianon.converters.dicom import require_turbojpeg

            require_turbojpeg()  # a missing library is said at the start, with the install hint
        items: list[Item] = []
        for s in slides:
            it = self._item(s, by_path.get(os.fsencode(_abs(s.path))))
            if it is not None:
                items.append(it)
        return items

    def _item(self, s, c) -> Item | None:
        """The work item for one detected slide, or None when it is settled here (an error, a
        skipped non-slide, a slide already done)."""
        rel = c.relpath if c else os.fsencode(s.path.name)
        shown = c.shown if c else os.fsencode(s.path)
        src_b = os.fsencode(_abs(s.path))
        if s.error is not None and isinstance(s.error, UnsupportedFormat) and c is not None and not c.explicit:
            # a file in a folder that is not a slide: listed as skipped, not an error
            if self.man is not None:
                self.man.add_skipped(src_b, "SKIP-" + keyed_hex(self.key, "skipped", rel)[:12], s.error.reason)
            return None
        if c is not None:
            self.roots_seen.add(c.root)
        if s.error is not None:
            if self.policy.overwrite:
                self.withdraw_earlier(src_b)
            pseudo = pseudonym_from(self.key, "relpath" if self.mode == "content" else self.mode, source=s.path, relpath=rel)
            self.error(src_b, rel, pseudo, None, redact_paths(s.error.reason, [s.path]), s.path, c, display_rel=shown)
            return None
        files = s.files or [s.path]
        try:
            fp = fast_fingerprint(files)
        except OSError as exc:
            pseudo = pseudonym_from(self.key, "path", source=s.path)
            self.error(src_b, rel, pseudo, s.format, f"cannot read: {os_reason(exc)}", s.path, c, display_rel=shown)
            return None
        if src_b in self.adopt:
            row = self.adopt[src_b]
            ctx = SlideContext(pseudonym=row.pseudonym, key=self.key, policy=self.policy)  # type: ignore[attr-defined]
            it = Item(s, ctx, row.pseudonym, row.relpath or rel, self.target, slide_id=row.id, shown=shown, size=fp[0])  # type: ignore[attr-defined]
            it.fp = fp  # type: ignore[attr-defined]
            it.adopted = True  # type: ignore[attr-defined]
            return it
        entry = self.pmap.lookup(s.path) if self.pmap else None
        if entry is not None and _repeats_source_name(entry, s.path):
            self.error(
                src_b,
                rel,
                None,
                s.format,
                f"the pseudonym map's name for this slide (line {entry.line}) repeats the source's file name or a folder name of its path; refused",
                s.path,
                c,
                label=self.next_label(),
                display_rel=shown,
            )
            return None
        if entry is None and getattr(self.cfg, "strict", False):
            pseudo = pseudonym_from(self.key, self.mode, source=s.path, relpath=rel, content=fp[2])
            self.error(src_b, rel, None, s.format, "not in the pseudonym map (--strict)", s.path, c, label=pseudo, display_rel=shown)
            return None
        pseudo = entry.slide if entry else pseudonym_from(self.key, self.mode, source=s.path, relpath=rel, content=fp[2])
        if self._done_before(src_b, rel, fp, files):
            return None
        # a dead run may have placed this slide's verified outputs before it could
        # commit the row: they carry this slide's pseudonym, so they are replaced
        pol = dataclasses.replace(self.policy, overwrite=True) if src_b in self.requeued else self.policy
        ctx = SlideContext(
            pseudonym=pseudo,
            key=self.key,
            policy=pol,
            patient_pseudonym=entry.patient if entry else None,
            study_pseudonym=entry.study if entry else None,
            map_line=(entry.line or 1) if entry else 0,
        )
        it = Item(s, ctx, pseudo, rel, self.target, shown=shown, size=fp[0])
        it.fp = fp  # type: ignore[attr-defined]
        return it

    def _done_before(self, src_b: bytes, rel, fp, files) -> bool:
        """The manifest has this slide (also under a moved path) done with the same content."""
        man = self.man
        if man is None:
            return False
        row = man.by_source(src_b)
        if row is None:
            moved = man.by_relpath_hash(rel, fp[2])
            if moved is not None and not moved.path.exists():
                man.move_source(moved.id, src_b, [os.fsencode(_abs(f)) for f in files])
                row = man.get(moved.id)
        if row is not None and not self.policy.overwrite and row.size == fp[0] and row.fast_hash == fp[2] and row.state in self.leave:
            man._set_files(row.id, [os.fsencode(_abs(f)) for f in files])
            self.already += 1
            return True
        return False

    def record_empty_folders(self, sel) -> None:
        for idx, folder in sel.folders:
            if idx not in self.roots_seen:
                self.error(
                    os.fsencode(_abs(folder)),
                    None,
                    None,
                    None,
                    "directory contains no slide wsianon can read",
                    folder,
                    None,
                    label=self.next_label(),
                    display_rel=os.fsencode(folder),
                )

    def refuse_collisions(self, items: list[Item]) -> list[Item]:
        """Pseudonym collisions: two sources, one name -> neither is written (checked before any write)."""
        groups: dict[str, list[Item]] = {}
        for it in items:
            groups.setdefault(it.pseudonym, []).append(it)
        ok_items = []
        for pseudo, group in groups.items():
            others = []
            if self.man is not None:
                srcs = {os.fsencode(_abs(g.src.path)) for g in group}
                ids = {g.slide_id for g in group}
                others = [r for r in self.man.by_pseudonym(pseudo) if r.source not in srcs and r.id not in ids and r.state in DONE_STATES and r.path.exists()]
            if len(group) > 1 or others:
                n = len(group) + len(others)
                for it in group:
                    self.error(
                        os.fsencode(_abs(it.src.path)),
                        it.relpath,
                        None,
                        it.src.format,
                        f"pseudonym collision: {n} different sources would get the same pseudonym (same entry in the pseudonym map, or identical content); refused",
                        it.src.path,
                        None,
                        label=self.next_label("collision"),
                        display_rel=it.shown,
                    )
                continue
            ok_items.extend(group)
        return ok_items

    def register(self, items: list[Item]) -> list[Item]:
        """Each item's row in the manifest (and, with --full-hash, the source's SHA-256)."""
        if self.man is None:
            return items
        for it in items:
            if getattr(it, "adopted", False):
                continue
            it.slide_id = self.man.upsert_source(
                os.fsencode(_abs(it.src.path)),
                it.relpath,
                it.pseudonym,
                it.src.format,
                it.fp,  # type: ignore[attr-defined]
                [os.fsencode(_abs(f)) for f in (it.src.files or [it.src.path])],
            )
            if getattr(self.cfg, "full_hash", False):
                try:
                    it.full = full_hash(it.src.files or [it.src.path])
                except OSError:
                    pass
        return items

    def on_submit(self, it: Item) -> None:
        if self.man is not None and it.slide_id is not None:
            self.man.mark_running(it.slide_id, self.run_id)

    def commit(self, it: Item, o: Outcome, p: list[dict]) -> None:
        """A finished slide: its verified output placed (a worker left it staged: ``o.place``), its
        outcome, its row (mapping, state, timings) in one transaction, the event.  Placed before the
        row is written: a stop before this leaves the output staged (removed, the slide redone)."""
        with uninterrupted():  # a stop signal waits until the slide is placed and recorded
            self._commit(it, o, p)

    def _commit(self, it: Item, o: Outcome, p: list[dict]) -> None:
        if o.place is not None:
            if self.out is None:  # never: a worker stages only inside OUT
                raise WsianonError(None, "a worker's output is staged but the job has no output folder")
            with J.settle(o, it.src):  # an error placing it is this slide's, as in the worker
                J.anon.place_staged(self.out, o)
        self.plans.extend(p)
        self.live.append(o)
        io_digests.adopt(o.digests)  # a worker's read-back digests: the record need not re-read the outputs
        # the record's images of the output, rendered by the worker: into the record's cache, and
        # not kept with the outcome (this run's outcomes stay in memory until the job ends)
        imgs, o.images = o.images, None
        if imgs is not None and self.out is not None and o.status == Status.OK:
            if self.seeder is None:
                from wsianon.pipeline.record import ImageSeeder

                self.seeder = ImageSeeder(self.out)
            self.seeder.seed(o.input_label, list(o.outputs), imgs, o.files)
        if o.status in (Status.ERROR, Status.FAILED) and it.ctx.policy.overwrite:
            self.withdraw_earlier(os.fsencode(_abs(it.src.path)))
        man = self.man
        if man is not None and it.slide_id is not None and o.status in STATE_OF:
            mo = ms = None
            if o.status in (Status.OK, Status.FAILED):
                mo, ms = "; ".join(o.outputs) or it.pseudonym, o.status
            extra = []
            if self.policy.in_place and o.status == Status.OK:
                extra = [os.fsencode(_abs(it.src.path.with_name(n))) for n in o.outputs]
            man.finish(
                it.slide_id,
                STATE_OF[o.status],
                o.as_dict(),
                outputs=o.outputs,
                error=o.error,
                mapping_output=mo,
                mapping_status=ms,
                seconds=o.timings.get("total", 0.0),
                bytes_in=o.bytes_in,
                bytes_written=o.bytes_written,
                run_id=self.run_id,
                extra_files=extra,
                full=it.full,
            )
        self.emit("slide", index=len(self.live), label=o.input_label, outcome=o, source=it.src.path, display=it.display, size=it.size)

    def runner(self, items: list[Item]):
        scheduler = getattr(self.cfg, "scheduler", None)
        if scheduler:
            ref = None
            if not getattr(self.cfg, "send_key", False):
                ref = W.KeyByPath(str(key_path(self.cfg.key_file).resolve()), key_fingerprint(self.key))
            return W.run_dask(items, scheduler, self.target, self.dest, self.emit, self.on_submit, key_ref=ref)
        if self.cfg.workers > 1 and len(items) > 1:
            return W.run_pool(items, self.cfg.workers, self.target, self.dest, self.emit, self.on_submit)
        return W.run_serial(items, self.target, self.dest, self.emit, self.on_submit)

    def drive(self, items: list[Item], mapping_path) -> None:
        """Process the items, committing each result; Ctrl-C stops the workers, requeues what was
        running and leaves a regenerated report (the next run resumes)."""
        runner = self.runner(items)
        close = getattr(runner, "close", None)
        try:
            for it, o, p in runner:
                self.commit(it, o, p)
                if STOP.is_set():
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            if close:
                close()  # stops the pool (kills its workers), or the serial runner's verification in flight
            self.close_seeder()
            man = self.man
            if man is not None:
                man.requeue_running()
                man.end_run(self.run_id, "interrupted")
                _clean_staging(self.out)
                try:
                    regenerate(man, self.out, mapping_path, self.cfg)
                except WsianonError:
                    pass
                c = man.counts()
                unlisted = 0
                if self.out is not None and not self.policy.in_place:
                    from wsianon.pipeline.record import unlisted_files

                    unlisted = len(unlisted_files(self.out))
                raise JobInterrupted(
                    len([o for o in self.live if o.status in STATE_OF]),
                    sum(c.get(s, 0) for s in ("ok", "quarantined", "error")),
                    c.get("pending", 0),
                    unlisted,
                ) from None
            raise
        finally:
            if close:
                close()  # also on an error here: no runner thread or worker goes on writing into OUT
            self.close_seeder()

    def close_seeder(self) -> None:
        """Commit the images the workers rendered (before the record reads the cache)."""
        if self.seeder is not None:
            self.seeder.close()
            self.seeder = None

    def result(self, mapping_path, kfp) -> J.JobResult:
        """The job's result: this run's outcomes, then those of slides done in earlier runs."""
        man = self.man
        report_path = None
        keep: dict = {}
        if man is not None:
            _clean_staging(self.out)  # what a lost worker left (every slide of this run is settled)
            man.end_run(self.run_id, "finished")
            report_path = regenerate(
                man, self.out, mapping_path, self.cfg, on_render=lambda done, total: self.emit("record", done=done, total=total), keep=keep
            )
        outcomes = list(self.live)
        if man is not None:
            labels_now = {o.input_label for o in self.live}
            for row in keep.get("rows") or man.rows():
                if row.entry is not None and row.entry.get("slide") not in labels_now:
                    outcomes.append(_outcome_from_entry(row.entry))
        has_mapping = mapping_path is not None and mapping_path.exists() and man is not None and bool(man.mapping_rows())
        res = J.JobResult(outcomes, report_path, mapping_path if has_mapping else None, self.quarantine, self.plans)
        res.already_done = self.already
        res.processed = len(self.live)
        res.skipped_inputs = len(man.skipped()) if man else 0
        res.key_fingerprint = kfp
        res.record = keep.get("record")  # what the record collected: the review sheet shows the same
        res.report = keep.get("report")  # the report's content (also where none is written: in place)
        if report_path is not None and self.out is not None:
            from wsianon.pipeline.record import unlisted_files

            res.unlisted = unlisted_files(self.out)  # OUT is shared whole: what is in it must be certified
        return res


def _repeats_source_name(entry, source: Path) -> bool:
    """A pseudonym map that gives a slide (or its patient) the source's own name — a map made from
    the file list by mistake — would name the shared output after the source, and the verifier
    accepts the map's names: refused.  Compared case-insensitively, as whole name or contained."""
    stems = {Path(source).stem.lower(), Path(source).name.lower()}
    if Path(source).suffix.lower() == ".dcm" or Path(source).is_dir():
        stems.add(Path(source).parent.name.lower())
    for name in (entry.slide, entry.patient):
        n = (name or "").lower()
        if len(n) >= 4 and any(n in st or (len(st) >= 4 and st in n) for st in stems if st):
            return True
    # nor a folder name of its path (a patient or case folder: MRN98765432/slide1.svs)
    return bool(mapnames.repeated([n for n in (entry.slide, entry.patient, entry.study) if n], [], source))


def _outputs_whole(out: Path, names: list[str], files: list[tuple[str, int]]) -> bool:
    """Every output name exists in OUT, and every file its verification placed has its size."""
    if not all(os.path.lexists(out / n) for n in names):
        return False
    for rel, size in files:
        try:
            if os.stat(out / rel).st_size != size:
                return False
        except OSError:
            return False
    return True


def _unchanged(path, st) -> bool:
    """The file has the size and modification time the manifest recorded."""
    try:
        s = os.stat(path)
    except OSError:
        return False
    return s.st_size == st[0] and s.st_mtime_ns == st[1]


def _record_error(man, run_id, src_b, rel, pseudo, fmt, reason, target, live, emit, path, c, label=None, display_rel=None):
    o = _error_outcome(label or pseudo or f"input #{len(live) + 1}", reason, target, fmt)
    o.notes.append("input could not be processed as a slide")
    live.append(o)
    if man is not None:
        sid = man.upsert_source(src_b, rel, pseudo, fmt, None, [src_b])
        man.finish(
            sid,
            "error",
            o.as_dict(),
            outputs=[],
            error=reason,
            mapping_output=None,
            mapping_status=None,
            seconds=0.0,
            bytes_in=0,
            bytes_written=0,
            run_id=run_id,
        )
    emit("slide", index=len(live), label=o.input_label, outcome=o, source=path, display=display(display_rel or rel or os.fsencode(path)))
