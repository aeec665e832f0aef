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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from wsianon.converters.base import SlideContext
from wsianon.errors import OutputError, UnsupportedFormat, WsianonError
from wsianon.io import digests as io_digests
from wsianon.io.atomic import STAGING_PREFIX, write_atomic, write_private
from wsianon.io.safefile import kind_of
from wsianon.io.safetext import os_reason, redact_paths
from wsianon.pipeline import jobs as J
from wsianon.pipeline import workers as W
from wsianon.pipeline.detect import SlideSource, expand_inputs
from wsianon.pipeline.keys import key_fingerprint, keyed_hex, load_or_create_key, pseudonym_from
from wsianon.pipeline.manifest import MANIFEST_SUFFIX, JobLock, Manifest, _sql_reason, fast_fingerprint, full_hash, manifest_path
from wsianon.pipeline.model import Outcome
from wsianon.pipeline.pseudonyms import load_pseudonym_map
from wsianon.pipeline.report import REPORT_NAME, build_report
from wsianon.pipeline.selection import Candidate, display, select_inputs
from wsianon.profiles.policy import PseudonymFrom, values
from wsianon.pipeline.model import DONE_STATES, STATE_OF_STATUS, State, Status

STATE_OF = STATE_OF_STATUS
PSEUDONYM_MODES = values(PseudonymFrom)


class JobInterrupted(Exception):
    """Ctrl-C: the job stopped cleanly; ``done_now`` slides finished in this run."""

    def __init__(self, done_now: int, done_total: int, pending: int):
        self.done_now, self.done_total, self.pending = done_now, done_total, pending
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


def _inside(child: Path, parent: Path) -> bool:
    c, p = os.path.realpath(child), os.path.realpath(parent)
    return c == p or c.startswith(p.rstrip(os.sep) + os.sep)


def check_locations(cfg, out: Path | None, mapping: Path | None, quarantine: Path | None) -> None:
    """Private files never inside the shareable OUT; OUT never equal to or inside an input folder."""
    if out is None:
        return
    for what, p in (("--mapping", mapping), ("--quarantine", quarantine), ("--log", getattr(cfg, "log", None))):
        if p is not None and _inside(p, out):
            raise WsianonError(p, f"{what} must be outside the output folder (OUT is shareable; this file is private)")
    if out.exists() and not out.is_dir():
        raise OutputError(out, "output path exists and is not a folder")
    for inp in cfg.inputs:
        ip = Path(inp)
        if ip.is_dir() and _inside(out, ip):
            raise WsianonError(out, "output folder is the same as, or inside, an input folder; choose an OUT outside the inputs")


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
    return json.dumps(
        {
            "target": cfg.target,
            "label": p.label,
            "macro": p.macro,
            "dates": p.dates,
            "rename": p.rename,
            "in_place": p.in_place,
            "allow_generic": p.allow_generic,
            "dicom_options": sorted(p.dicom_options),
        },
        sort_keys=True,
    )


def _check_meta(man: Manifest, cfg, kfp: str, mode: str) -> None:
    old = man.get_meta("key_fingerprint")
    if old is not None and old != kfp:
        raise WsianonError(man.path, f"this job was started with another key (fingerprint {old}, now {kfp}); use the same --key-file or a new OUT")
    oldm = man.get_meta("pseudonym_from")
    if oldm is not None and oldm != mode:
        raise WsianonError(man.path, f"this job derives pseudonyms from '{oldm}', not '{mode}'; use the same --pseudonym-from or a new OUT")
    oldp = man.get_meta("policy")
    if oldp is not None and oldp != _policy_meta(cfg) and not cfg.policy.overwrite:
        raise WsianonError(
            man.path, "this job was started with other options (target, label, macro, dates, rename, ...); use the same options, a new OUT, or --overwrite"
        )
    man.set_meta("key_fingerprint", kfp)
    man.set_meta("pseudonym_from", mode)
    man.set_meta("policy", _policy_meta(cfg))


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


def regenerate(man: Manifest, out: Path | None, mapping_path: Path | None, cfg, key: bytes | None = None) -> Path | None:
    """Write OUT/wsianon-report.json and the mapping CSV from the manifest (cumulative)."""
    import csv
    import io

    rows = man.rows()
    entries = [r.entry for r in rows if r.entry is not None]
    report_path = None
    if out is not None:
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
            "manifest": "private, beside OUT (" + man.path.name.replace(MANIFEST_SUFFIX, "") + MANIFEST_SUFFIX + ")",
        }
        # what the record (HTML report, certificate) reads: the job's key fingerprint and every run's dates
        data["key_fingerprint"] = man.get_meta("key_fingerprint")
        data["runs"] = [{"started": r["started"], "finished": r["finished"]} for r in man.runs()]
        data["slides"] = entries
        # files that are not slides: listed by a keyed label and our own reason, never by name
        data["skipped_inputs"] = [{"input": label, "reason": reason} for _, label, reason in skipped]
        report_path = Path(out) / REPORT_NAME
        try:
            write_atomic(report_path, (json.dumps(data, indent=2) + "\n").encode())
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
                write_private(mapping_path, buf.getvalue().encode("utf-8", "surrogateescape"))
            except OSError as exc:
                raise OutputError(mapping_path, f"cannot write the mapping: {os_reason(exc)}") from None
    if report_path is not None:
        from wsianon.pipeline.record import write_record

        assert out is not None, "the report is only written into OUT"
        write_record(out, key=key)  # HTML report + certificate, from the cumulative report and the outputs
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
    if not sel.candidates and not sel.not_regular and sel.missing:
        # nothing to read at all: refuse before anything (OUT, report) is created
        raise WsianonError(sel.missing[0], "no such file or directory")

    use_manifest = not policy.dry_run
    man = lock = None
    if use_manifest:
        if out is not None:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(out, f"cannot create output folder: {os_reason(exc)}") from None
            mpath = Path(getattr(cfg, "manifest", None) or manifest_path(out))
        else:
            assert mapping_path is not None, "without OUT a job is in-place (checked above): its mapping defaults to the working folder"
            mpath = Path(getattr(cfg, "manifest", None) or (mapping_path.parent / f"wsianon{MANIFEST_SUFFIX}"))
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
    policy = cfg.policy
    target = cfg.target
    dest = J.anon.Destinations(out, quarantine or Path("."))
    live: list[Outcome] = []  # outcomes of this run, in finishing order
    plans: list[dict] = []
    run_id = None
    adopt: dict[bytes, object] = {}  # in-place outputs renamed just before a kill -> their row
    requeued: set[bytes] = set()  # sources a dead run was processing
    if man is not None:
        _check_meta(man, cfg, kfp, mode)
        run_id = man.start_run()
        for row in man.requeue_running():
            requeued.add(row.source)
            if policy.in_place:
                _inplace_recover(row, adopt)
        _clean_staging(out)
        _clean_staging(quarantine)
    for m in sel.missing:
        _record_error(
            man,
            run_id,
            os.fsencode(_abs(m)),
            None,
            None,
            None,
            "no such file or directory",
            target,
            live,
            emit,
            m,
            None,
            label=f"input #{len(live) + 1}",
            display_rel=os.fsencode(m),
        )
    # resume fast path: files of done slides, unchanged since, are not read again
    fstates = man.file_states() if (man is not None and not policy.overwrite) else {}
    already = already_failed = 0
    todo: list[Candidate] = []
    leave = DONE_STATES if getattr(cfg, "retry_failed", False) else (*DONE_STATES, State.ERROR)
    roots_seen: set[int] = set()
    for c in sel.candidates:
        st = fstates.get(os.fsencode(c.path))
        if st is not None and st[3] in leave:
            try:
                s = os.stat(c.path)
                if s.st_size == st[0] and s.st_mtime_ns == st[1]:
                    already += 1
                    already_failed += st[3] == State.ERROR
                    roots_seen.add(c.root)
                    continue
            except OSError:
                pass
        todo.append(c)
    by_path = {os.fsencode(c.path): c for c in todo}
    for c in sel.not_regular:
        if c.explicit:  # named by the user: refused as an error (one line), never opened
            try:
                reason = f"is {kind_of(os.stat(c.path).st_mode)}, not a regular file: refused"
            except OSError as exc:
                reason = f"cannot read: {os_reason(exc)}"
            _record_error(
                man,
                run_id,
                os.fsencode(_abs(c.path)),
                c.relpath,
                None,
                None,
                reason,
                target,
                live,
                emit,
                c.path,
                c,
                label=f"input #{len(live) + 1}",
                display_rel=c.shown or None,
            )
            continue
        label = "SKIP-" + keyed_hex(key, "skipped", c.relpath)[:12]
        if man is not None:
            man.add_skipped(os.fsencode(c.path), label, "not a regular file (FIFO, device or socket); not opened")
    slides = expand_inputs([c.path for c in todo], policy.allow_generic) if todo else []
    if cfg.target == "dicom" and not policy.dry_run and any(s.error is None and not s.spec.is_dicom for s in slides):
        from wsianon.converters.dicom import require_turbojpeg

        require_turbojpeg()  # a missing library is said at the start, with the install hint
    items: list[Item] = []
    for s in slides:
        c = by_path.get(os.fsencode(_abs(s.path)))
        rel = c.relpath if c else os.fsencode(s.path.name)
        shown = c.shown if c else os.fsencode(s.path)
        src_b = os.fsencode(_abs(s.path))
        if s.error is not None:
            if isinstance(s.error, UnsupportedFormat) and c is not None and not c.explicit:
                # a file in a folder that is not a slide: listed as skipped, not an error
                if man is not None:
                    man.add_skipped(src_b, "SKIP-" + keyed_hex(key, "skipped", rel)[:12], s.error.reason)
                continue
        if c is not None:
            roots_seen.add(c.root)
        if s.error is not None:
            pseudo = pseudonym_from(key, "relpath" if mode == "content" else mode, source=s.path, relpath=rel)
            _record_error(man, run_id, src_b, rel, pseudo, None, redact_paths(s.error.reason, [s.path]), target, live, emit, s.path, c, display_rel=shown)
            continue
        files = s.files or [s.path]
        try:
            fp = fast_fingerprint(files)
        except OSError as exc:
            pseudo = pseudonym_from(key, "path", source=s.path)
            _record_error(man, run_id, src_b, rel, pseudo, s.format, f"cannot read: {os_reason(exc)}", target, live, emit, s.path, c, display_rel=shown)
            continue
        if src_b in adopt:
            row = adopt[src_b]
            ctx = SlideContext(pseudonym=row.pseudonym, key=key, policy=policy)
            it = Item(s, ctx, row.pseudonym, row.relpath or rel, target, slide_id=row.id, shown=shown, size=fp[0])
            it.fp = fp  # type: ignore[attr-defined]
            it.adopted = True  # type: ignore[attr-defined]
            items.append(it)
            continue
        entry = pmap.lookup(s.path) if pmap else None
        if entry is None and getattr(cfg, "strict", False):
            pseudo = pseudonym_from(key, mode, source=s.path, relpath=rel, content=fp[2])
            _record_error(
                man, run_id, src_b, rel, None, s.format, "not in the pseudonym map (--strict)", target, live, emit, s.path, c, label=pseudo, display_rel=shown
            )
            continue
        pseudo = entry.slide if entry else pseudonym_from(key, mode, source=s.path, relpath=rel, content=fp[2])
        if man is not None:
            row = man.by_source(src_b)
            if row is None:
                moved = man.by_relpath_hash(rel, fp[2])
                if moved is not None and not moved.path.exists():
                    man.move_source(moved.id, src_b, [os.fsencode(_abs(f)) for f in files])
                    row = man.get(moved.id)
            if row is not None and not policy.overwrite and row.size == fp[0] and row.fast_hash == fp[2]:
                if row.state in leave:
                    man._set_files(row.id, [os.fsencode(_abs(f)) for f in files])
                    already += 1
                    continue
        # a dead run may have placed this slide's verified outputs before it could
        # commit the row: they carry this slide's pseudonym, so they are replaced
        pol = dataclasses.replace(policy, overwrite=True) if src_b in requeued else policy
        ctx = SlideContext(
            pseudonym=pseudo, key=key, policy=pol, patient_pseudonym=entry.patient if entry else None, study_pseudonym=entry.study if entry else None
        )
        items.append(Item(s, ctx, pseudo, rel, target, shown=shown, size=fp[0]))
        items[-1].fp = fp  # type: ignore[attr-defined]
    for idx, folder in sel.folders:
        if idx not in roots_seen:
            _record_error(
                man,
                run_id,
                os.fsencode(_abs(folder)),
                None,
                None,
                None,
                "directory contains no slide wsianon can read",
                target,
                live,
                emit,
                folder,
                None,
                label=f"input #{len(live) + 1}",
                display_rel=os.fsencode(folder),
            )
    # pseudonym collisions: two sources, one name -> neither is written (checked before any write)
    groups: dict[str, list[Item]] = {}
    for it in items:
        groups.setdefault(it.pseudonym, []).append(it)
    ok_items = []
    for pseudo, group in groups.items():
        others = []
        if man is not None:
            srcs = {os.fsencode(_abs(g.src.path)) for g in group}
            ids = {g.slide_id for g in group}
            others = [r for r in man.by_pseudonym(pseudo) if r.source not in srcs and r.id not in ids and r.state in DONE_STATES and r.path.exists()]
        if len(group) > 1 or others:
            n = len(group) + len(others)
            for it in group:
                _record_error(
                    man,
                    run_id,
                    os.fsencode(_abs(it.src.path)),
                    it.relpath,
                    None,
                    it.src.format,
                    f"pseudonym collision: {n} different sources would get the same pseudonym (same entry in the pseudonym map, or identical content); refused",
                    target,
                    live,
                    emit,
                    it.src.path,
                    None,
                    label=f"collision #{len(live) + 1}",
                    display_rel=it.shown,
                )
            continue
        ok_items.extend(group)
    items = ok_items
    if man is not None:
        for it in items:
            if getattr(it, "adopted", False):
                continue
            it.slide_id = man.upsert_source(
                os.fsencode(_abs(it.src.path)),
                it.relpath,
                it.pseudonym,
                it.src.format,
                it.fp,  # type: ignore[attr-defined]
                [os.fsencode(_abs(f)) for f in (it.src.files or [it.src.path])],
            )
            if getattr(cfg, "full_hash", False):
                try:
                    it.full = full_hash(it.src.files or [it.src.path])
                except OSError:
                    pass
    total_bytes = sum(it.size for it in items)
    emit("start", total=len(items), bytes=total_bytes, already=already, already_failed=already_failed, skipped=len(man.skipped()) if man else 0)

    def on_submit(it: Item) -> None:
        if man is not None and it.slide_id is not None:
            man.mark_running(it.slide_id, run_id)

    def commit(it: Item, o: Outcome, p: list[dict]) -> None:
        plans.extend(p)
        live.append(o)
        io_digests.adopt(o.digests)  # a worker's read-back digests: the record need not re-read the outputs
        if man is not None and it.slide_id is not None and o.status in STATE_OF:
            mo = ms = None
            if o.status in (Status.OK, Status.FAILED):
                mo, ms = "; ".join(o.outputs) or it.pseudonym, o.status
            extra = []
            if policy.in_place and o.status == Status.OK:
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
                run_id=run_id,
                extra_files=extra,
                full=it.full,
            )
        emit("slide", index=len(live), label=o.input_label, outcome=o, source=it.src.path, display=it.display, size=it.size)

    scheduler = getattr(cfg, "scheduler", None)
    if scheduler:
        runner = W.run_dask(items, scheduler, target, dest, emit, on_submit)
    elif cfg.workers > 1 and len(items) > 1:
        runner = W.run_pool(items, cfg.workers, target, dest, emit, on_submit)
    else:

        def _serial():
            for it in items:
                on_submit(it)
                yield from W.run_serial([it], target, dest, emit)

        runner = _serial()
    status = "finished"
    try:
        for it, o, p in runner:
            commit(it, o, p)
    except KeyboardInterrupt:
        status = "interrupted"
        close = getattr(runner, "close", None)
        if close:
            close()  # stops the pool (kills its workers)
        if man is not None:
            man.requeue_running()
            man.end_run(run_id, status)
            _clean_staging(out)
            try:
                regenerate(man, out, mapping_path, cfg)
            except WsianonError:
                pass
            c = man.counts()
            raise JobInterrupted(
                len([o for o in live if o.status in STATE_OF]), sum(c.get(s, 0) for s in ("ok", "quarantined", "error")), c.get("pending", 0)
            ) from None
        raise
    report_path = None
    if man is not None:
        _clean_staging(out)  # what a lost worker left (every slide of this run is settled)
        man.end_run(run_id, status)
        report_path = regenerate(man, out, mapping_path, cfg)
    outcomes = list(live)
    done_now = {id(o) for o in live}
    if man is not None:
        labels_now = {o.input_label for o in live}
        for r in man.rows():
            if r.entry is not None and r.entry.get("slide") not in labels_now:
                outcomes.append(_outcome_from_entry(r.entry))
    has_mapping = mapping_path is not None and mapping_path.exists() and man is not None and bool(man.mapping_rows())
    res = J.JobResult(outcomes, report_path, mapping_path if has_mapping else None, quarantine, plans)
    res.already_done = already
    res.processed = len(done_now)
    res.skipped_inputs = len(man.skipped()) if man else 0
    res.key_fingerprint = kfp
    return res


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
