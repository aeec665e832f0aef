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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from wsianon.converters.base import SlideContext
from wsianon.errors import OutputError, WsianonError
from wsianon.io.safetext import os_reason, redact_paths
from wsianon.pipeline import anonymize as anon
from wsianon.pipeline.detect import SlideSource, expand_inputs
from wsianon.pipeline.inspect import inspect_source
from wsianon.pipeline.keys import Mapping, load_or_create_key, slide_pseudonym
from wsianon.pipeline.model import Outcome
from wsianon.pipeline.pseudonyms import load_pseudonym_map
from wsianon.pipeline.report import write_report
from wsianon.profiles.policy import Policy

Target = Literal["native", "dicom"]


@dataclass
class JobConfig:
    inputs: list[Path]
    out: Path | None = None  # required unless in-place or dry-run
    target: Target = "native"
    policy: Policy = field(default_factory=Policy)
    key_file: Path | None = None
    mapping: Path | None = None  # default: <OUT>.mapping.csv beside OUT
    quarantine: Path | None = None  # default: <OUT>.quarantine beside OUT
    pseudonyms: Path | None = None  # CSV: source, slide pseudonym[, patient pseudonym[, study pseudonym]]
    workers: int = 1


@dataclass
class JobResult:
    outcomes: list[Outcome]
    report_path: Path | None
    mapping_path: Path | None
    quarantine_dir: Path | None
    plans: list[dict] = field(default_factory=list)  # dry-run only

    @property
    def exit_code(self) -> int:
        if not self.outcomes:
            return 1
        return 0 if all(o.status in ("ok", "dry-run") for o in self.outcomes) else 1


def default_side_paths(out: Path) -> tuple[Path, Path]:
    out = Path(out)
    return out.parent / f"{out.name}.mapping.csv", out.parent / f"{out.name}.quarantine"


def process_slide(src: SlideSource, ctx: SlideContext, target: Target, dest: anon.Destinations, progress=None) -> tuple[Outcome, list[dict]]:
    """Run every stage for one slide. Never raises for user errors: they become the outcome."""
    outcome = Outcome(input_label=ctx.pseudonym, format=src.format, target=target)
    plans: list[dict] = []
    t_start = time.perf_counter()
    try:
        outcome.bytes_in = sum(f.stat().st_size for f in src.files if f.exists())
        t0 = time.perf_counter()
        inv = inspect_source(src, ctx.policy)
        outcome.timings["inspect"] = time.perf_counter() - t0
        use_dicom = target == "dicom" or src.format == "dicom"
        if ctx.policy.dry_run:
            from wsianon.pipeline import dryrun

            # the real run's refusal rules, nothing written
            if use_dicom:
                dryrun.check_dicom(src, inv, ctx, dest.out)
                plans.append({"slide": ctx.pseudonym, "format": src.format, "target": "dicom", "inventory": inv.public()})
            else:
                plans.append({"slide": ctx.pseudonym, **dryrun.check_native(src, inv, ctx, dest.out)})
            outcome.status = "dry-run"
        elif use_dicom:
            if ctx.policy.in_place:
                raise WsianonError(src.path, "in-place mode is for the native target only")
            anon.process_dicom(src, inv, ctx, dest, outcome)
        elif ctx.policy.in_place:
            anon.process_native_in_place(src, inv, ctx, outcome)
        else:
            anon.process_native_copy(src, inv, ctx, dest, outcome, progress)
    except WsianonError as exc:
        outcome.status = "error"
        # the reason only: reports live inside OUT, paths stay out
        outcome.error = redact_paths(exc.reason, [src.path, *src.files])
    except MemoryError:
        outcome.status = "error"
        outcome.error = "out of memory"
    except OSError as exc:
        outcome.status = "error"
        outcome.error = f"I/O error: {os_reason(exc)}"
    except Exception as exc:  # an internal bug must not kill the batch; fail closed
        outcome.status = "error"
        outcome.error = f"internal error ({type(exc).__name__}); nothing was written for this slide"
        # frames only (file:line:function), never the message: it could carry a value
        frames = traceback.extract_tb(exc.__traceback__)[-4:]
        outcome.notes.append("internal error at " + " <- ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in reversed(frames)))
    outcome.timings["total"] = time.perf_counter() - t_start
    return outcome, plans


def _worker(args):
    src, ctx, target, dest = args
    return process_slide(src, ctx, target, dest)


def run_job(cfg: JobConfig, on_event: Callable[..., None] | None = None) -> JobResult:
    """Run a batch. ``on_event(kind, **info)`` receives progress events (kinds:
    'start' total=N, 'slide' index, label, outcome, source, 'bytes' n)."""
    emit = on_event or (lambda *a, **k: None)
    policy = cfg.policy
    if cfg.out is None and not (policy.in_place or policy.dry_run):
        raise WsianonError(None, "an output folder (-o OUT) is required unless --in-place or --dry-run")
    key = load_or_create_key(cfg.key_file)
    pmap = load_pseudonym_map(cfg.pseudonyms) if cfg.pseudonyms else None
    out = Path(cfg.out) if cfg.out else None
    if out is not None:
        mapping_path, quarantine = default_side_paths(out)
    else:
        mapping_path, quarantine = (Path.cwd() / "wsianon.mapping.csv" if policy.in_place else None), None
    if cfg.mapping:
        mapping_path = Path(cfg.mapping)
    if cfg.quarantine:
        quarantine = Path(cfg.quarantine)
    if out is not None and not policy.dry_run:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(out, f"cannot create output folder: {os_reason(exc)}") from None
    slides = expand_inputs([Path(p) for p in cfg.inputs], policy.allow_generic)
    emit("start", total=len(slides))
    # refuse to write over an input
    if out is not None:
        for s in slides:
            if s.error is None and s.path.resolve().parent == out.resolve() and policy.rename == "keep":
                s.error = OutputError(s.path, "output folder is the input's folder and --rename keep would overwrite the input")
    outcomes: list[Outcome] = []
    plans: list[dict] = []
    mapping = Mapping(mapping_path) if mapping_path else None
    dest = anon.Destinations(out, quarantine or Path("."))
    jobs = []
    for i, s in enumerate(slides, 1):
        if s.error is not None:
            o = Outcome(input_label=f"input #{i}", status="error", error=redact_paths(s.error.reason, [s.path]), target=cfg.target)
            o.notes.append("input could not be read as a slide")
            outcomes.append(o)
            emit("slide", index=i, label=o.input_label, outcome=o, source=s.path, error=s.error)
            continue
        entry = pmap.lookup(s.path) if pmap else None
        pseudo = entry.slide if entry else slide_pseudonym(key, s.path)
        ctx = SlideContext(
            pseudonym=pseudo,
            key=key,
            policy=policy,
            patient_pseudonym=entry.patient if entry else None,
            study_pseudonym=entry.study if entry else None,
        )
        jobs.append((i, s, ctx))
    if cfg.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=cfg.workers) as ex:
            futs = [(i, s, ctx, ex.submit(_worker, (s, ctx, cfg.target, dest))) for i, s, ctx in jobs]
            results = []
            for i, s, ctx, fut in futs:
                o, p = fut.result()
                results.append((i, s, ctx, o, p))
                emit("slide", index=i, label=o.input_label, outcome=o, source=s.path)
    else:
        results = []
        for i, s, ctx in jobs:
            emit("slide-start", index=i, label=ctx.pseudonym, size=sum(f.stat().st_size for f in s.files if f.exists()))
            o, p = process_slide(s, ctx, cfg.target, dest, progress=lambda n: emit("bytes", n=n))
            results.append((i, s, ctx, o, p))
            emit("slide", index=i, label=o.input_label, outcome=o, source=s.path)
    for i, s, ctx, o, p in results:
        outcomes.append(o)
        plans.extend(p)
        if mapping is not None and o.status in ("ok", "failed") and not policy.dry_run:
            mapping.add(s.path, "; ".join(o.outputs) or ctx.pseudonym, o.status)
    report_path = None
    if out is not None and not policy.dry_run:
        report_path = write_report(out, outcomes, cfg)
    if mapping is not None and mapping.rows:
        mapping.write()
    return JobResult(outcomes, report_path, mapping_path if mapping and mapping.rows else None, quarantine, plans)
