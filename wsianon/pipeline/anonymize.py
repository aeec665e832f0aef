"""Stage 3 (+4): anonymize one slide — plan, apply into staging, verify, place or quarantine.

Native route: the converter's plan is applied by ``apply_copy`` into a hidden
staging folder inside OUT (or by ``apply_in_place`` on the source when the user
asked for in-place mode), verified, then moved into place atomically.
DICOM route: the DICOM converter writes into the staging folder; the DICOM
verifier judges it.  Two phases (``convert_dicom``, then ``DicomStaged.verify_and_place``), so
that the serial runner can verify one slide while the next converts (pipeline/workers.py).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from wsianon.converters.base import Inventory, SlideContext
from wsianon.errors import OutputError, WsianonError
from wsianon.io import digests
from wsianon.io.atomic import Staging, uninterrupted, write_atomic
from wsianon.io.fsattrs import remove_foreign_attributes
from wsianon.io.jpeg_plan import deferred_removals, scrub_jpeg_segments
from wsianon.io.plan import Plan, Removal, apply_copy, apply_in_place, journal_path, rollback_journal
from wsianon.io.safefile import same_file
from wsianon.io.safetext import os_reason
from wsianon.io.writeback import Writeback
from wsianon.pipeline.detect import SlideSource
from wsianon.pipeline.model import Outcome, Status, Verdict
from wsianon.pipeline.preflight import check_decodes_dicom
from wsianon.verify import canaries as independent_canaries
from wsianon.verify import fileattrs, keyedtokens
from wsianon.verify import mapnames
from wsianon.pipeline.verify import scan_outputs, snapshot_source, stem_canaries, verify_native

if TYPE_CHECKING:
    from wsianon.converters.dicom import DicomResult

Progress = Callable[[int], None]


@dataclass
class Destinations:
    out: Path | None  # the shareable output folder
    quarantine: Path  # failed outputs, with their findings (outside OUT)
    # a worker (local pool, Dask) leaves the verified output in its staging folder: the coordinator
    # places it (``place_staged``) when it records the slide, so that a stop in between leaves in
    # OUT no whole output the record does not list (the staging folder is removed, the slide redone)
    place_later: bool = False


@dataclass
class Placement:
    """What placing a verified (or quarantined) slide's staging folder takes, carried by its
    outcome (``Outcome.place``) from a worker to the coordinator."""

    staging: str  # the staging folder's name, inside OUT
    last: list[str]  # top-level entries moved last (``Staging.commit``)
    overwrite: bool
    synced: list[str]  # ``Staging.sync``: done where the slide was verified
    quarantine: str | None = None  # a failed slide: its quarantine folder (absolute)
    findings: bytes = b""  # a failed slide: its findings.json


def preflight_source(inv: Inventory) -> bool:
    """Refuse a source whose structure is broken or whose image data OpenSlide cannot
    decode (a corrupt tile or associated image; a decoder crash or hang, probed in a
    child process) with a clear reason, before anything is written.  Sources
    OpenSlide cannot open at all are left to the format's own checks; whether OpenSlide
    opened (and probed) it: where not, ``probe_output`` probes the output before the
    verifier reads it in-process."""
    from wsianon.pipeline.preflight import preflight

    return preflight(inv.path)


def probe_output(inv: Inventory, probed: bool, output: Path) -> None:
    """The decode probe on ``output`` when the source's could not run (``preflight_source``)."""
    if not probed:
        from wsianon.pipeline.preflight import check_output_decodes

        check_output_decodes(inv.path, output)


def make_plan(src: SlideSource, inv: Inventory, ctx: SlideContext, copy: bool = False) -> Plan:
    """The converter's plan, closed (closed world) and with the JPEG segment scrub.  ``copy``: the
    copy route, which judges TIFF tiles and strips from the buffers it reads (``apply_copy``;
    ``deferred_removals`` reports them after it ran)."""
    from wsianon.converters.closed_world import close_plan

    assert src.converter is not None  # native sources are detected by their converter
    plan = src.converter.plan(inv, ctx)
    close_plan(plan, inv.format)  # closed world: only allowed tags, unreferenced bytes zeroed
    scrub_jpeg_segments(plan, defer=copy)  # JPEG tiles/strips/tables keep only the segments a decoder needs
    return plan


def _place_or_quarantine(staging: Staging, dest: Destinations, ctx: SlideContext, verdict: Verdict, outcome: Outcome, last: list[str] | None = None) -> None:
    """A verified slide moves into OUT; a failed one goes to the quarantine with its findings.
    The outcome says what is placed (``outputs``, ``files``, ``digests``: the names in OUT; a
    rename keeps each file's identity, so the staged files' digests are the placed ones'); with
    ``dest.place_later`` (a worker) the staging folder stays and ``outcome.place`` says how the
    coordinator places it, else it is placed here."""
    outcome.verdict = verdict
    pl = Placement(staging.root.name, list(last or []), ctx.policy.overwrite, staging.sync())
    if verdict.ok:
        order = staging.order(last)
        outcome.outputs = order
        staged = digests.files_of([staging.root / n for n in order])
        outcome.files = placed_files(staged, staging.root)
        outcome.digests = digests.entries(staged)  # the record (in the coordinator) need not re-read them
        outcome.status = Status.OK
    else:
        outcome.status = Status.FAILED
        outcome.error = "verification failed; output quarantined"
        pl.quarantine = str(dest.quarantine / ctx.pseudonym)
        pl.findings = json.dumps(verdict.as_dict(), indent=2).encode()
    if dest.place_later:
        staging.keep()
        outcome.place = pl
        return
    _place(staging, pl, outcome)


def place_staged(out: Path, outcome: Outcome) -> None:
    """The coordinator's side of ``Destinations.place_later``: place the staging folder a worker
    left in ``out`` as ``outcome.place`` says (nothing to do without one).  Raises as placing in
    the worker would (the caller makes it the slide's outcome); the staging folder is removed in
    any case."""
    pl, outcome.place = outcome.place, None
    if pl is None:
        return
    try:
        staging = Staging.reopen(out, pl.staging)
    except BaseException:
        outcome.outputs, outcome.files, outcome.digests = [], [], []  # nothing of it is shared
        raise
    with staging:
        _place(staging, pl, outcome)


def _place(staging: Staging, pl: Placement, outcome: Outcome) -> None:
    with uninterrupted():  # all of a slide's entries or none: a stop signal waits for the renames
        _place_now(staging, pl, outcome)


def _place_now(staging: Staging, pl: Placement, outcome: Outcome) -> None:
    try:
        if pl.quarantine is None:
            staging.commit(last=pl.last, overwrite=pl.overwrite, synced=pl.synced)
            return
        qdir = Path(pl.quarantine)
        if qdir.exists():
            shutil.rmtree(qdir)
        staging.commit(dest_dir=qdir, overwrite=True, synced=pl.synced)
        write_atomic(qdir / "findings.json", pl.findings, 0o600)
        os.chmod(qdir, 0o700)
    except BaseException:
        if pl.quarantine is None:  # what was moved before the error (or a Ctrl-C) leaves OUT again
            for n in outcome.outputs:
                p = staging.out_dir / n
                if not os.path.lexists(staging.root / n) and os.path.lexists(p):
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
        outcome.outputs, outcome.files, outcome.digests = [], [], []  # nothing of it is shared
        raise


def placed_files(files: list[Path], root: Path) -> list[dict]:
    """The files just placed (verified; ``digests.files_of`` the placed outputs): their paths below
    ``root``, sizes and SHA-256 (the verifier's read-back computed them; ``None`` where it did not).
    A file found in a slide's output folder later, or changed since, was never verified
    (``record``, ``deliver``)."""
    return [{"file": f.relative_to(root).as_posix(), "size": f.stat().st_size, "sha256": digests.lookup(f)} for f in files]


def process_native_copy(src: SlideSource, inv: Inventory, ctx: SlideContext, dest: Destinations, outcome: Outcome, progress: Progress | None) -> None:
    conv = src.converter
    assert conv is not None  # native sources are detected by their converter
    t0 = time.perf_counter()
    probed = preflight_source(inv)
    plan = make_plan(src, inv, ctx, copy=True)
    outcome.timings["plan"] = time.perf_counter() - t0
    outcome.removals = plan.removals
    outcome.closed_world = plan.closed_world
    outcome.notes.extend(plan.notes)
    assert dest.out is not None
    main = plan.files[0].dest
    with Staging(dest.out, ctx.pseudonym) as staging:
        t0 = time.perf_counter()
        # the source is read once: the copy hands its buffers to the verifier's source-side
        # tile identity (tile tables located by tifffile, not by the redactor)
        snap = snapshot_source(inv, stream=True)
        tapped = False
        for fp in plan.files:
            tap = None
            if snap.feeder is not None and not tapped and same_file(fp.source, inv.path):
                tap, tapped = snap.feeder.feed, True
            outcome.bytes_written += apply_copy(fp, staging.path(fp.dest), progress, tap=tap)
        tap = None  # the bound ``feed`` kept the source-side tile tables alive through verification
        snap.finish_stream(inv.path)
        deferred_removals(plan)  # the JPEG payloads the copy zeroed (outcome.removals is plan.removals)
        outcome.timings["apply"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        files = staging.files()
        probe_output(inv, probed, staging.root / main)
        verdict = verify_native(inv, conv, staging.root / main, files, ctx.policy, root=staging.root, snap=snap, names=ctx.names())
        outcome.timings["verify"] = time.perf_counter() - t0
        _place_or_quarantine(staging, dest, ctx, verdict, outcome, last=conv.commit_last(plan))


def check_in_place_target(target: Path, final: Path, overwrite: bool) -> None:
    """Refuse an in-place run before anything is written when its result could not
    be undone or would leave the identifying name behind."""
    if target.is_symlink():
        raise WsianonError(target, "is a symbolic link: --in-place patches and renames real files only (pass the file it points to)")
    try:
        st = os.stat(target)
    except OSError as exc:
        raise WsianonError(target, f"cannot read: {os_reason(exc)}") from None
    if st.st_nlink > 1:
        raise WsianonError(target, f"has {st.st_nlink} hard links: --in-place would leave the identifying name on the others")
    if final != target and (final.exists() or final.is_symlink()) and not overwrite:
        raise OutputError(final, "in-place result name already exists beside the input; nothing was changed (use --overwrite to replace it)")


def rename_no_replace(src: Path, dest: Path, overwrite: bool) -> None:
    """Rename ``src`` to ``dest``; never replaces an existing ``dest`` unless ``overwrite``."""
    if overwrite:
        os.replace(src, dest)
        return
    try:
        os.link(src, dest)  # fails if dest exists: no check-then-rename race
    except FileExistsError:
        raise OutputError(dest, "in-place result name already exists beside the input; in-place changes rolled back") from None
    except OSError:
        if dest.exists() or dest.is_symlink():
            raise OutputError(dest, "in-place result name already exists beside the input; in-place changes rolled back") from None
        os.replace(src, dest)  # a filesystem without hard links
        return
    os.unlink(src)


def process_native_in_place(src: SlideSource, inv: Inventory, ctx: SlideContext, outcome: Outcome) -> Path:
    conv = src.converter
    assert conv is not None  # native sources are detected by their converter
    probed = preflight_source(inv)
    plan = make_plan(src, inv, ctx)
    if len(plan.files) != 1 or plan.files[0].source is None or plan.files[0].content is not None:
        raise WsianonError(src.path, f"in-place mode supports single-file formats only ({conv.title} is not)")
    target = src.path
    fp = plan.files[0]
    final = target.with_name(fp.dest) if ctx.policy.rename == "pseudonym" else target
    check_in_place_target(target, final, ctx.policy.overwrite)
    outcome.removals = plan.removals
    outcome.closed_world = plan.closed_world
    outcome.notes.extend(plan.notes)
    t0 = time.perf_counter()
    snap = snapshot_source(inv)
    outcome.timings["snapshot"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # keep the journal until verification has passed
    jpath = journal_path(target)
    outcome.bytes_written = apply_in_place(fp, target, keep_journal=True)
    outcome.timings["apply"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        probe_output(inv, probed, target)
        verdict = verify_native(inv, conv, target, [target], ctx.policy, root=target.parent, snap=snap, names=ctx.names())
    except BaseException:
        rollback_journal(target)  # verification could not finish: the input goes back as it was
        raise
    # the file keeps the input's extended attributes (a note someone attached): removed once the bytes
    # verified (a rollback must give the input back with its own), then judged like the bytes
    if verdict.ok:
        remove_foreign_attributes(target)
        fileattrs.add_check(verdict, [target])
    outcome.timings["verify"] = time.perf_counter() - t0
    outcome.verdict = verdict
    if not verdict.ok:
        rollback_journal(target)
        outcome.status = Status.FAILED
        outcome.error = "verification failed; in-place changes rolled back"
        return target
    if final != target:
        try:
            rename_no_replace(target, final, ctx.policy.overwrite)
        except OutputError:
            rollback_journal(target)  # the name appeared while we worked: undo, keep the input as it was
            raise
    jpath.unlink(missing_ok=True)
    outcome.outputs = [final.name]
    outcome.status = Status.OK
    return final


class SlideCancelled(BaseException):
    """The run stopped (Ctrl-C, an error in the coordinator) before this slide's verified output
    was placed: nothing of it is placed, its staging folder is removed, the next run redoes it.
    A ``BaseException``: never turned into the slide's outcome."""


@dataclass
class DicomStaged:
    """A slide converted to DICOM into its own staging folder (inspect + convert + frame scrub
    done) whose verification and placing are still to do; the staging folder stays until
    :meth:`verify_and_place` (or :meth:`discard`) ends."""

    src: SlideSource
    inv: Inventory
    ctx: SlideContext
    dest: Destinations
    outcome: Outcome
    staging: Staging
    result: DicomResult
    writeback: Writeback | None = None

    def __post_init__(self) -> None:
        # the conversion has written its last byte: the disk writes the staged files back while
        # they are verified, so that the placing fsync (Staging.commit, unchanged) finds them clean
        if self.writeback is None:
            self.writeback = Writeback(self.staging.files(), self.ctx.pseudonym, self.staging.out_dir)

    def verify_and_place(self, gate: Callable[[], None] | None = None) -> None:
        """Verify; ``gate()`` (may raise :class:`SlideCancelled`) runs just before anything is
        placed; then place in OUT or quarantine.  The staging folder is removed in any case."""
        assert self.writeback is not None
        with self.staging:
            try:
                verdict = _verify_dicom_phase(self.src, self.inv, self.ctx, self.outcome, self.staging, self.result)
                if gate is not None:
                    gate()
                self.writeback.finish()  # a write-back error is this slide's one-line error; nothing placed
                _place_or_quarantine(self.staging, self.dest, self.ctx, verdict, self.outcome)
            finally:
                self.writeback.stop()  # never touches the files once they are moved or removed

    def discard(self) -> None:
        if self.writeback is not None:
            self.writeback.stop()
        self.staging.discard()

    def withdraw(self) -> None:
        """Remove what :meth:`verify_and_place` placed: the run stopped before this slide's outcome
        was recorded, so nothing of it may stay (the next run redoes the slide)."""
        o = self.outcome
        if o.status == Status.OK and self.dest.out is not None:
            for name in o.outputs:
                p = self.dest.out / name
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        elif o.status == Status.FAILED:
            shutil.rmtree(self.dest.quarantine / self.ctx.pseudonym, ignore_errors=True)


def convert_dicom(src: SlideSource, inv: Inventory, ctx: SlideContext, dest: Destinations, outcome: Outcome) -> DicomStaged:
    """The DICOM route's first phase: convert (or de-identify a DICOM input) into a new staging
    folder and scrub the passed-through frames: a conversion's frames as wsidicom writes them
    (``FrameScrub``; ``WSIANON_FRAME_SCRUB=after``: in a second pass instead), a DICOM input's
    and any instance the converter's hook did not see whole by ``scrub_frames`` after writing.
    On an error the staging folder is removed."""
    from wsianon.converters import dicom as dicom_mod

    assert dest.out is not None
    outcome.target = "dicom"
    if not src.spec.is_dicom:
        preflight_source(inv)  # a decoder crash or hang refuses this slide only
    staging = Staging(dest.out, ctx.pseudonym)
    try:
        folder = staging.path(ctx.pseudonym)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        emptied = 0
        if src.spec.is_dicom:
            result = dicom_mod.deidentify_series(inv, ctx, folder)
            rest = list(result.files)
            # the frames are the source's: probe them where nothing but them lies (OpenSlide reads
            # the whole folder of a DICOM file, an input's may hold anything), in a child
            check_decodes_dicom(rest, name=Path(inv.input_files[0]) if inv.input_files else inv.path)
        else:
            frames = None if os.environ.get("WSIANON_FRAME_SCRUB") == "after" else dicom_mod.FrameScrub()
            result = dicom_mod.convert_slide(src.path, inv, ctx, folder, frames=frames)
            emptied, rest = frames.outcome(result.files) if frames is not None else (0, list(result.files))
        # passed-through JPEG frames keep only the segments a decoder needs
        emptied += sum(dicom_mod.scrub_frames(Path(f)) for f in rest)
        outcome.timings["convert"] = time.perf_counter() - t0
        outcome.removals = list(result.removals)
        if emptied:
            outcome.removals.append(Removal("structure", "JPEG COM/APPn in frames", "payload zeroed", f"{emptied} segment(s)"))
        outcome.notes.extend(result.notes)
        outcome.bytes_written = sum(f.stat().st_size for f in result.files)
    except BaseException:
        staging.discard()
        raise
    return DicomStaged(src, inv, ctx, dest, outcome, staging, result)


def _verify_dicom_phase(src: SlideSource, inv: Inventory, ctx: SlideContext, outcome: Outcome, staging: Staging, result: DicomResult) -> Verdict:
    """The DICOM route's verification of a staged slide: the verifier's verdict (nothing placed)."""
    from wsianon.io.dicomframes import walks_remembered
    from wsianon.pipeline.verify_dicom import verify_dicom_output
    from wsianon.verify.dicom.frames import FrameSegments
    from wsianon.verify.tileid import release_cycles

    t0 = time.perf_counter()
    # the conversion's reader is closed, but its objects form cycles (tifffile's pages and file,
    # opentile's tiler): collected now, not at the collector's next full pass, they are not held
    # beside the verification's own (the source's tile tables as tuples: 12.4 MiB at 4.5 GB)
    release_cycles()
    verdict = Verdict()
    scan_verdict = Verdict()
    independent = independent_canaries.independent_for_dicom(inv.path, inv.format, inv.input_files, list(result.files), src.spec.is_dicom)
    # a pseudonym map's names are accepted as DICOM text: never one of the source's own values
    mapnames.add_check(verdict, ctx.names(), [c.value for c in inv.canaries() + stem_canaries(inv.path) + independent], inv.path)
    canaries = independent_canaries.for_dicom_outputs(inv.canaries() + stem_canaries(inv.path), independent, inv.format, list(result.files))
    # the byte scan (I/O + hyperscan, GIL released) overlaps the DICOM checks; its read-back
    # also feeds the frame-segment check (frames located by the verifier's own item walk)
    out_files = staging.files()
    # one walk of each instance's items serves every check that locates its frames
    with walks_remembered(), ThreadPoolExecutor(max_workers=1) as pool:
        segments = FrameSegments(list(result.files))
        scan = pool.submit(
            scan_outputs,
            canaries,
            out_files,
            scan_verdict,
            staging.root,
            segments.feeders_for(out_files),
            tokens=keyedtokens.from_dicom(list(result.files)),
            foreign=lambda: keyedtokens.of_inventory(inv, canaries, src.spec.is_dicom),
        )
        verify_dicom_output(inv, list(result.files), ctx, verdict, frame_segments=segments)
        scan.result()
    segments.check(verdict)
    verdict.extend(scan_verdict)
    outcome.timings["verify"] = time.perf_counter() - t0
    return verdict


def process_dicom(src: SlideSource, inv: Inventory, ctx: SlideContext, dest: Destinations, outcome: Outcome) -> None:
    """The whole DICOM route for one slide: convert, verify, place or quarantine."""
    convert_dicom(src, inv, ctx, dest, outcome).verify_and_place()
