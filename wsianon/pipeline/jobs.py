"""Orchestration of a batch: expand inputs, then detect → inspect → anonymize → verify → report
for every slide, each slide's failure isolated from the others.

Python API::

    from wsianon.pipeline.jobs import JobConfig, run_job
    result = run_job(JobConfig(inputs=[Path("a.svs")], out=Path("out"), target="native"))
    result.exit_code  # 0 when every slide was anonymized and verified clean
"""

from __future__ import annotations

import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from wsianon.converters.base import SlideContext
from wsianon.errors import NothingToShare, WsianonError
from wsianon.io.quiet import debug_traceback
from wsianon.io.safetext import os_reason, redact_paths
from wsianon.pipeline import anonymize as anon
from wsianon.pipeline.detect import SlideSource
from wsianon.pipeline.inspect import inspect_source
from wsianon.pipeline.model import Outcome
from wsianon.profiles.policy import Policy, PseudonymFrom, Target, check_choice
from wsianon.pipeline.model import Status


@dataclass
class JobConfig:
    inputs: list[Path]
    out: Path | None = None  # required unless in-place or dry-run
    target: Target | str = Target.native
    policy: Policy = field(default_factory=Policy)
    key_file: Path | None = None
    mapping: Path | None = None  # default: <OUT>.mapping.csv beside OUT
    quarantine: Path | None = None  # default: <OUT>.quarantine beside OUT
    pseudonyms: Path | None = None  # CSV: source, slide pseudonym[, patient pseudonym[, study pseudonym]]
    workers: int = 1
    # archive-scale jobs (pipeline/batch.py, pipeline/manifest.py)
    pseudonym_from: PseudonymFrom | str = PseudonymFrom.relpath  # see pipeline/keys.py
    strict: bool = False  # with pseudonyms: refuse sources not in the map
    retry_failed: bool = False  # resume also retries slides that failed before
    from_file: Path | None = None  # one input path per line
    input_root: Path | None = None  # relative paths of --from-file entries are taken below it
    include: list[str] = field(default_factory=list)  # globs (file name or relative path)
    exclude: list[str] = field(default_factory=list)
    scheduler: str | None = None  # Dask distributed scheduler address
    send_key: bool = False  # Dask: send the key in each task instead of workers reading the key file
    full_hash: bool = False  # record each source's full SHA-256 in the manifest
    manifest: Path | None = None  # default: manifest_path(OUT)
    log: Path | None = None  # JSON lines of events (the CLI writes it)

    def __post_init__(self) -> None:
        check_choice("target", self.target, Target)
        check_choice("pseudonym-from", self.pseudonym_from, PseudonymFrom)


@dataclass
class JobResult:
    outcomes: list[Outcome]
    report_path: Path | None
    mapping_path: Path | None
    quarantine_dir: Path | None
    plans: list[dict] = field(default_factory=list)  # dry-run only
    # set by the batch runner (pipeline/batch.py)
    already_done: int = 0  # slides done before this run (resume)
    processed: int = 0  # slides settled in this run
    skipped_inputs: int = 0  # input files that are not slides
    key_fingerprint: str | None = None
    unlisted: list[str] = field(default_factory=list)  # files in OUT no verification vouches for (record.unlisted_files)
    record: Any = None  # what the record collected (record.RecordData): the review sheet shows the same
    report: dict | None = None  # the report's content (OUT/wsianon-report.json; an in-place job's is written nowhere)

    @property
    def exit_code(self) -> int:
        if not self.outcomes or self.unlisted:
            return 1
        return 0 if all(o.status in (Status.OK, Status.DRY_RUN, Status.SKIPPED) for o in self.outcomes) else 1


def default_side_paths(out: Path) -> tuple[Path, Path]:
    out = Path(out)
    return out.parent / f"{out.name}.mapping.csv", out.parent / f"{out.name}.quarantine"


def process_slide(src: SlideSource, ctx: SlideContext, target: Target | str, dest: anon.Destinations, progress=None) -> tuple[Outcome, list[dict]]:
    """Run every stage for one slide. Never raises for user errors: they become the outcome."""
    outcome, plans, _ = start_slide(src, ctx, target, dest, progress)
    return outcome, plans


@dataclass
class Deferred:
    """The second phase of a slide on the DICOM route (verification, then placing or
    quarantine), left for the caller to run (the serial runner runs it in a thread while the
    next slide converts).  ``spent``: the first phase's wall time."""

    outcome: Outcome
    src: SlideSource
    staged: anon.DicomStaged
    spent: float

    def finish(self, gate: Callable[[], None] | None = None) -> None:
        """Verify and place (``gate()``, if given, runs just before anything is placed and may
        raise ``anon.SlideCancelled``); exceptions become the outcome as in the first phase.
        ``total``: both phases' own wall time (not the wait between them)."""
        t0 = time.perf_counter()
        try:
            with settle(self.outcome, self.src):
                self.staged.verify_and_place(gate)
        finally:
            self.outcome.timings["total"] = self.spent + time.perf_counter() - t0
            withhold_map_name(self.outcome, self.staged.ctx, self.src)

    def discard(self) -> None:
        """Drop the staged slide unverified (the run stops before its second phase starts)."""
        self.staged.discard()


def start_slide(
    src: SlideSource, ctx: SlideContext, target: Target | str, dest: anon.Destinations, progress=None, defer: bool = False
) -> tuple[Outcome, list[dict], Deferred | None]:
    """Every stage for one slide, or with ``defer`` on the DICOM conversion route every stage
    up to the converted, scrubbed staging folder: its verification and placing are then
    returned as a :class:`Deferred` (``None`` when the slide is already settled)."""
    outcome = Outcome(input_label=ctx.pseudonym, format=src.format, target=target)
    plans: list[dict] = []
    deferred = None
    t_start = time.perf_counter()
    with settle(outcome, src):
        outcome.bytes_in = sum(f.stat().st_size for f in src.files if f.exists())
        t0 = time.perf_counter()
        inv = inspect_source(src, ctx.policy)
        outcome.timings["inspect"] = time.perf_counter() - t0
        refuse_map_identifiers(src, inv, ctx)
        use_dicom = target == "dicom" or src.spec.is_dicom  # a DICOM input has the DICOM route only
        if ctx.policy.dry_run:
            from wsianon.pipeline import dryrun

            # the real run's refusal rules, nothing written
            if use_dicom:
                dryrun.check_dicom(src, inv, ctx, dest.out)
                plans.append({"slide": ctx.pseudonym, "format": src.format, "target": "dicom", "inventory": inv.public()})
            else:
                plans.append({"slide": ctx.pseudonym, **dryrun.check_native(src, inv, ctx, dest.out)})
            outcome.status = Status.DRY_RUN
        elif use_dicom:
            if ctx.policy.in_place:
                raise WsianonError(src.path, "in-place mode is for the native target only")
            if defer and deferrable(src, ctx, target):
                staged = anon.convert_dicom(src, inv, ctx, dest, outcome)
                deferred = Deferred(outcome, src, staged, time.perf_counter() - t_start)
            else:
                anon.process_dicom(src, inv, ctx, dest, outcome)
        elif ctx.policy.in_place:
            anon.process_native_in_place(src, inv, ctx, outcome)
        else:
            anon.process_native_copy(src, inv, ctx, dest, outcome, progress)
    if deferred is None:
        outcome.timings["total"] = time.perf_counter() - t_start
        withhold_map_name(outcome, ctx, src)
    return outcome, plans, deferred


MAP_REFUSED = "the pseudonym map's names for this slide (line {}) repeat one of its identifying values or a folder name of its path; refused (choose names that are no identifier of the slide)"


def withhold_map_name(outcome: Outcome, ctx: SlideContext, src: SlideSource) -> None:
    """A slide whose map name was refused (here, or by the verification's ``pseudonym-names``) is
    listed in the shared report under a keyed label, never under that name (the slide's own
    identifier)."""
    if not ctx.map_line:
        return
    v = outcome.verdict
    failed = v is not None and any(c.name == "pseudonym-names" and not c.ok for c in v.checks)
    if failed or (outcome.error or "").startswith(MAP_REFUSED.split("(")[0]):
        from wsianon.pipeline.keys import slide_pseudonym

        outcome.input_label = slide_pseudonym(ctx.key, src.path)


def refuse_map_identifiers(src: SlideSource, inv, ctx: SlideContext) -> None:
    """A pseudonym map's names for this slide (slide, patient, study) that repeat one of the values
    the inspection read from it (its barcode, case number, patient ID) or a folder name of its path
    are refused before anything is written (the error names the map's line, never the value)."""
    if not ctx.map_line:
        return
    from wsianon.io.scan import stem_canaries
    from wsianon.verify import mapnames

    values = [c.value for c in inv.canaries() + stem_canaries(src.path)]
    names = [n for n in (ctx.pseudonym, ctx.patient_pseudonym, ctx.study_pseudonym) if n]
    if mapnames.repeated(names, values, src.path):
        raise WsianonError(src.path, MAP_REFUSED.format(ctx.map_line))


def deferrable(src: SlideSource, ctx: SlideContext, target: Target | str) -> bool:
    """Whether :func:`start_slide` with ``defer`` may leave this slide's verification to the
    caller (the DICOM conversion route; not dry-run, in-place or a DICOM input)."""
    return target == "dicom" and not src.spec.is_dicom and not ctx.policy.dry_run and not ctx.policy.in_place


@contextmanager
def settle(outcome: Outcome, src: SlideSource) -> Iterator[None]:
    """The exception -> outcome mapping of a slide, whichever phase raised: user errors and
    internal bugs end as this slide's outcome (one line, no traceback), never the batch."""
    try:
        yield
    except NothingToShare as exc:
        outcome.status = Status.SKIPPED
        outcome.notes.append(exc.reason)
    except WsianonError as exc:
        outcome.status = Status.ERROR
        # the reason only: reports live inside OUT, paths stay out
        outcome.error = redact_paths(exc.reason, [src.path, *src.files])
        if exc.path is not None and exc.path != src.path and exc.path in src.files:
            outcome.error_file = exc.path  # a damaged instance, not the slide's first file
    except MemoryError:
        outcome.status = Status.ERROR
        outcome.error = "out of memory"
    except OSError as exc:
        outcome.status = Status.ERROR
        outcome.error = f"I/O error: {os_reason(exc)}"
    except Exception as exc:  # an internal bug must not kill the batch; fail closed
        outcome.status = Status.ERROR
        outcome.error = f"internal error ({type(exc).__name__}); nothing was written for this slide"
        # frames only (file:line:function), never the message: it could carry a value
        frames = traceback.extract_tb(exc.__traceback__)[-4:]
        outcome.notes.append("internal error at " + " <- ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in reversed(frames)))
        debug_traceback(exc)


def run_job(cfg: JobConfig, on_event: Callable[..., None] | None = None) -> JobResult:
    """Run a batch as a resumable job (see pipeline/batch.py). ``on_event(kind, **info)``
    receives progress events (kinds: 'start' total=N bytes=B already=K, 'slide-start' item,
    'bytes' n, 'slide' index, label, outcome, source, display)."""
    from wsianon.pipeline.batch import run_batch

    return run_batch(cfg, on_event)
