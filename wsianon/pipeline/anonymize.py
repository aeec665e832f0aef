"""Stage 3 (+4): anonymize one slide — plan, apply into staging, verify, place or quarantine.

Native route: the converter's plan is applied by ``apply_copy`` into a hidden
staging folder inside OUT (or by ``apply_in_place`` on the source when the user
asked for in-place mode), verified, then moved into place atomically.
DICOM route: the DICOM converter writes into the staging folder; the DICOM
verifier judges it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from wsianon.converters.base import Inventory, SlideContext
from wsianon.errors import CorruptInput, OutputError, WsianonError
from wsianon.io.atomic import Staging, write_atomic
from wsianon.io.jpeg_plan import scrub_jpeg_segments
from wsianon.io.plan import Plan, Removal, apply_copy, apply_in_place, journal_path, rollback_journal
from wsianon.pipeline.detect import SlideSource
from wsianon.pipeline.model import Outcome, Verdict
from wsianon.verify import canaries as independent_canaries
from wsianon.pipeline.verify import scan_outputs, snapshot_source, stem_canaries, verify_native

Progress = Callable[[int], None]


@dataclass
class Destinations:
    out: Path | None  # the shareable output folder
    quarantine: Path  # failed outputs, with their findings (outside OUT)


def preflight_source(inv: Inventory) -> None:
    """Refuse a source whose image data OpenSlide cannot decode (a corrupt tile or
    associated image) with a clear reason, before anything is written.  Sources
    OpenSlide cannot open at all are left to the format's own checks."""
    import openslide

    try:
        slide = openslide.OpenSlide(str(inv.path))
    except Exception:
        return
    try:
        for name in list(slide.associated_images.keys()):
            slide.associated_images[name]
        for lvl in range(slide.level_count):
            w, h = slide.level_dimensions[lvl]
            slide.read_region((0, 0), lvl, (min(256, w), min(256, h)))
    except openslide.OpenSlideError as exc:
        raise CorruptInput(inv.path, f"image data cannot be decoded (OpenSlide: {str(exc)[:120]})") from None
    finally:
        slide.close()


def make_plan(src: SlideSource, inv: Inventory, ctx: SlideContext) -> Plan:
    plan = src.converter.plan(inv, ctx)
    scrub_jpeg_segments(plan)
    return plan


def _place_or_quarantine(
    staging: Staging, dest: Destinations, ctx: SlideContext, verdict: Verdict, outcome: Outcome, last: list[str] | None = None
) -> None:
    """A verified slide moves into OUT; a failed one goes to the quarantine with its findings."""
    outcome.verdict = verdict
    if verdict.ok:
        moved = staging.commit(last=last, overwrite=ctx.policy.overwrite)
        outcome.outputs = [p.name for p in moved]
        outcome.status = "ok"
        return
    outcome.status = "failed"
    outcome.error = "verification failed; output quarantined"
    qdir = dest.quarantine / ctx.pseudonym
    if qdir.exists():
        shutil.rmtree(qdir)
    staging.commit(dest_dir=qdir, overwrite=True)
    write_atomic(qdir / "findings.json", json.dumps(verdict.as_dict(), indent=2).encode(), 0o600)
    os.chmod(qdir, 0o700)


def process_native_copy(
    src: SlideSource, inv: Inventory, ctx: SlideContext, dest: Destinations, outcome: Outcome, progress: Progress | None
) -> None:
    conv = src.converter
    t0 = time.perf_counter()
    preflight_source(inv)
    plan = make_plan(src, inv, ctx)
    outcome.timings["plan"] = time.perf_counter() - t0
    outcome.removals = plan.removals
    outcome.notes.extend(plan.notes)
    assert dest.out is not None
    main = plan.files[0].dest
    with Staging(dest.out, ctx.pseudonym) as staging, ThreadPoolExecutor(max_workers=1) as pool:
        t0 = time.perf_counter()
        # the source snapshot (level tile hashes) is read while the copy runs
        snap_future = pool.submit(snapshot_source, inv)
        for fp in plan.files:
            outcome.bytes_written += apply_copy(fp, staging.path(fp.dest), progress)
        outcome.timings["apply"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        files = staging.files()
        verdict = verify_native(inv, conv, staging.root / main, files, ctx.policy, root=staging.root, snap=snap_future.result())
        outcome.timings["verify"] = time.perf_counter() - t0
        _place_or_quarantine(staging, dest, ctx, verdict, outcome, last=conv.commit_last(plan))


def process_native_in_place(src: SlideSource, inv: Inventory, ctx: SlideContext, outcome: Outcome) -> Path:
    conv = src.converter
    preflight_source(inv)
    plan = make_plan(src, inv, ctx)
    if len(plan.files) != 1 or plan.files[0].source is None or plan.files[0].content is not None:
        raise WsianonError(src.path, f"in-place mode supports single-file formats only ({conv.title} is not)")
    outcome.removals = plan.removals
    outcome.notes.extend(plan.notes)
    t0 = time.perf_counter()
    snap = snapshot_source(inv)
    outcome.timings["snapshot"] = time.perf_counter() - t0
    target = src.path
    fp = plan.files[0]
    t0 = time.perf_counter()
    # keep the journal until verification has passed
    jpath = journal_path(target)
    outcome.bytes_written = apply_in_place(fp, target, keep_journal=True)
    outcome.timings["apply"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    verdict = verify_native(inv, conv, target, [target], ctx.policy, root=target.parent, snap=snap)
    outcome.timings["verify"] = time.perf_counter() - t0
    outcome.verdict = verdict
    if not verdict.ok:
        rollback_journal(target)
        outcome.status = "failed"
        outcome.error = "verification failed; in-place changes rolled back"
        return target
    jpath.unlink(missing_ok=True)
    final = target
    if ctx.policy.rename == "pseudonym":
        final = target.with_name(fp.dest)
        if final.exists() and final != target:
            raise OutputError(final, "in-place rename target already exists")
        os.replace(target, final)
    outcome.outputs = [final.name]
    outcome.status = "ok"
    return final


def process_dicom(
    src: SlideSource, inv: Inventory, ctx: SlideContext, dest: Destinations, outcome: Outcome
) -> None:
    from wsianon.converters import dicom as dicom_mod
    from wsianon.pipeline.verify_dicom import verify_dicom_output

    assert dest.out is not None
    outcome.target = "dicom"
    with Staging(dest.out, ctx.pseudonym) as staging:
        folder = staging.path(ctx.pseudonym)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if src.format == "dicom":
            result = dicom_mod.deidentify_series(inv, ctx, folder)
        else:
            result = dicom_mod.convert_slide(src.path, inv, ctx, folder)
        # passed-through JPEG frames keep only the segments a decoder needs
        emptied = sum(dicom_mod.scrub_frames(Path(f)) for f in result.files)
        outcome.timings["convert"] = time.perf_counter() - t0
        outcome.removals = list(result.removals)
        if emptied:
            outcome.removals.append(Removal("structure", "JPEG COM/APPn in frames", "payload zeroed", f"{emptied} segment(s)"))
        outcome.notes.extend(result.notes)
        outcome.bytes_written = sum(f.stat().st_size for f in result.files)
        t0 = time.perf_counter()
        verdict = Verdict()
        scan_verdict = Verdict()
        independent = independent_canaries.harvest(inv.path, src.format, list(inv.input_files))
        if src.format == "dicom":
            independent = independent_canaries.drop_kept_dicom(independent, list(result.files))
        canaries = independent_canaries.union(inv.canaries() + stem_canaries(inv.path), independent, src.format)
        # the byte scan (I/O + hyperscan, GIL released) overlaps the DICOM checks
        with ThreadPoolExecutor(max_workers=1) as pool:
            scan = pool.submit(scan_outputs, canaries, staging.files(), scan_verdict, staging.root)
            verify_dicom_output(inv, list(result.files), ctx, verdict)
            scan.result()
        verdict.checks.extend(scan_verdict.checks)
        verdict.findings.extend(scan_verdict.findings)
        outcome.timings["verify"] = time.perf_counter() - t0
        _place_or_quarantine(staging, dest, ctx, verdict, outcome)
