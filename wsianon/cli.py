"""Command-line front end (typer). Parsing and printing only; the work is in wsianon.pipeline."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.table import Table
from typer.core import TyperCommand, TyperOption

from wsianon import __version__
from wsianon.errors import WsianonError
from wsianon.io.safetext import os_reason, safe_text
from wsianon.jobconsole import TerminalConsole
from wsianon.profiles.policy import CodedData, DatesPolicy, LabelPolicy, MacroPolicy, PseudonymFrom, RenamePolicy, Target, ThumbnailPolicy
from wsianon.pipeline.model import Status
from wsianon.verify.reportnames import safe_removal

app = typer.Typer(
    name="wsianon",
    help=(
        "Remove every trace of patient identity from whole slide images — label and macro photos, "
        "scanner metadata, file names — and prove that nothing was left behind.\n\n"
        "Formats: Aperio SVS (incl. GT450), Hamamatsu NDPI, 3DHistech MRXS, Roche/Ventana BIF, "
        "Philips TIFF, Philips iSyntax, Leica SCN, DICOM WSI."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
# terminals by their file descriptors, never by FORCE_COLOR / TTY_COMPATIBLE (``jobconsole.on_terminal``)
out_console = TerminalConsole()
err_console = TerminalConsole(stderr=True)


MAX_WORKERS = 1024  # local worker processes: a larger --workers is a usage error, not a fork storm


def _flags_take_no_value() -> None:
    """typer's rich help prints a boolean flag's type (``--dry-run <bool>``) as if it took
    a value; a flag takes none, so its type column stays empty."""
    import typer.core as _tc

    opt = getattr(_tc, "TyperOption", None)
    orig = getattr(opt, "display_type_rich", None)
    if orig is None or getattr(orig, "_wsianon", False):
        return

    def display_type_rich(self, ctx):
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return orig(self, ctx)

    display_type_rich.__dict__["_wsianon"] = True  # marks the patch: applied once
    assert opt is not None, "orig was read from opt"
    opt.display_type_rich = display_type_rich


_flags_take_no_value()


def _typer_consoles_by_descriptor() -> None:
    """typer prints help and usage errors through consoles of its own, made terminals by
    FORCE_COLOR, PY_COLORS or GITHUB_ACTIONS: they too are terminals only by their file
    descriptors (``TerminalConsole``), so no control code reaches a piped stream."""
    import typer.rich_utils as _ru

    _ru.Console = TerminalConsole  # type: ignore[misc]


_typer_consoles_by_descriptor()


class _OptionsOnce(TyperCommand):
    """A command whose options that take one value may each be given once: click keeps the last
    of ``-o A -o B`` without a word, and a job run into the wrong folder, or with the wrong
    policy, on an archive's only copies is a mistake to stop before anything is written.
    Repeatable options (``--profile``, ``--include``) and flags (given twice they mean the same)
    are left alone. The values are not echoed: they may be slide names."""

    def make_parser(self, ctx):
        parser = super().make_parser(ctx)
        parse = parser.parse_args

        def parse_args(args):
            opts, rest, order = parse(args=args)
            seen: set[int] = set()
            for param in order:
                if not isinstance(param, TyperOption) or param.multiple or param.count or param.is_flag:
                    continue
                if id(param) in seen:
                    raise typer.BadParameter("given more than once; give it once (only one value can apply).", ctx=ctx, param=param)
                seen.add(id(param))
            return opts, rest, order

        parser.parse_args = parse_args  # type: ignore[method-assign]
        return parser


def _version(value: bool) -> None:
    if value:
        out_console.print(f"wsianon {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    pass


def _fail(msg: str, code: int = 2) -> NoReturn:
    err_console.print(f"[red]error:[/red] {safe_text(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _status_style(status: str) -> str:
    return {"ok": "green", "dry-run": "cyan", "failed": "red", "error": "red"}.get(status, "white")


@app.command(cls=_OptionsOnce)
def run(
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="Slides, slide folders or DICOM folders to anonymize.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Output folder (shareable: only pseudonymised names and the report go here).")] = None,
    target: Annotated[
        Target, typer.Option("--target", help="native: keep the vendor format; dicom: convert to DICOM WSI and apply PS3.15 Annex E.")
    ] = Target.native,
    label: Annotated[LabelPolicy, typer.Option(help="Label image: remove it, or replace it by a blank image of the same size.")] = LabelPolicy.remove,
    macro: Annotated[MacroPolicy, typer.Option(help="Macro/overview image (usually shows the label): remove or keep.")] = MacroPolicy.remove,
    thumbnail: Annotated[
        ThumbnailPolicy,
        typer.Option(help="Thumbnail (the slide downsampled; a kept one is proven to be the slide): keep, or remove to share nothing but the pyramid."),
    ] = ThumbnailPolicy.keep,
    dates: Annotated[DatesPolicy, typer.Option(help="Acquisition dates and times: remove, keep the year only, or keep.")] = DatesPolicy.remove,
    rename: Annotated[RenamePolicy, typer.Option(help="Output file names: keyed pseudonym (default) or the source name.")] = RenamePolicy.pseudonym,
    profile: Annotated[
        Optional[list[str]], typer.Option("--profile", help="DICOM profile option(s) added to the Basic Profile (see README), e.g. retain-device-identity.")
    ] = None,
    pseudonyms: Annotated[Optional[Path], typer.Option("--pseudonyms", help="CSV: source, slide pseudonym[, patient pseudonym[, study pseudonym]].")] = None,
    key_file: Annotated[
        Optional[Path],
        typer.Option("--key-file", help="Project key (created with mode 0600 on first use). Default: ~/.config/wsianon/key or $WSIANON_KEY_FILE."),
    ] = None,
    mapping: Annotated[Optional[Path], typer.Option("--mapping", help="Private source→output CSV (mode 0600). Default: OUT.mapping.csv beside OUT.")] = None,
    quarantine: Annotated[
        Optional[Path], typer.Option("--quarantine", help="Where slides that fail verification go. Default: OUT.quarantine beside OUT.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (what would be removed, by field name) and write nothing.")] = False,
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Patch the input files themselves (journaled, verified, rolled back on failure). Never the default.")
    ] = False,
    allow_generic: Annotated[bool, typer.Option("--allow-generic", help="Anonymize TIFFs no vendor redactor claims, fail-closed.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist in OUT.")] = False,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=MAX_WORKERS, help="Slides processed in parallel (local processes; never more than there are slides).")
    ] = 1,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    review_sheet: Annotated[
        Optional[Path],
        typer.Option(
            "--review-sheet",
            help="PRIVATE review sheet (sources' labels and macros beside the outputs; identifying, mode 0600, never inside OUT). Default: OUT.review.html beside OUT.",
        ),
    ] = None,
    no_review_sheet: Annotated[bool, typer.Option("--no-review-sheet", help="Do not write the private review sheet.")] = False,
    mpp: Annotated[
        Optional[float],
        typer.Option(
            "--mpp", min=0.001, max=1000.0, help="Pixel spacing (micrometres per pixel) for slides that state none (DICOM target); a slide's own spacing wins."
        ),
    ] = None,
    accept_unrun_checks: Annotated[
        bool,
        typer.Option(
            "--accept-unrun-checks",
            help="Accept a slide whose verification could not run every check (e.g. dciodvfy not installed); such checks are reported as 'not run'.",
        ),
    ] = False,
    coded_data: Annotated[CodedData, typer.Option("--coded-data", help=CODED_DATA_HELP)] = CodedData.sample,
    pseudonym_from: Annotated[
        PseudonymFrom,
        typer.Option(
            "--pseudonym-from",
            help="What the keyed pseudonym hashes: relpath (path below the input root given here; survives moving the archive), content (content fingerprint), path (absolute path).",
        ),
    ] = PseudonymFrom.relpath,
    strict: Annotated[bool, typer.Option("--strict", help="With --pseudonyms: refuse any source that is not in the map.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Resume also retries slides that failed in an earlier run.")] = False,
    from_file: Annotated[Optional[Path], typer.Option("--from-file", help="Read input paths from LIST (one per line).")] = None,
    input_root: Annotated[
        Optional[Path],
        typer.Option("--input-root", help="With --from-file: relative paths (for pseudonyms) are taken below this folder (default: the list's folder)."),
    ] = None,
    include: Annotated[Optional[list[str]], typer.Option("--include", help="Only files whose name or relative path matches this glob (repeatable).")] = None,
    exclude: Annotated[
        Optional[list[str]], typer.Option("--exclude", help="Leave out files whose name or relative path matches this glob (repeatable).")
    ] = None,
    scheduler: Annotated[
        Optional[str],
        typer.Option("--scheduler", help="Run the slides on this Dask distributed scheduler (e.g. tcp://host:8786); OUT must be shared with the workers."),
    ] = None,
    send_key: Annotated[
        bool,
        typer.Option(
            "--send-key",
            help="With --scheduler: send the project key inside each task (trusted network or Dask TLS only). "
            "Default: the workers read the key file at the same path and only its fingerprint travels.",
        ),
    ] = False,
    full_hash: Annotated[bool, typer.Option("--full-hash", help="Also record each source's full SHA-256 in the job manifest.")] = False,
    log: Annotated[Optional[Path], typer.Option("--log", help="Write JSON lines of job events to FILE (private: outside OUT).")] = None,
    dicomweb: Annotated[
        Optional[str], typer.Option("--dicomweb", help="Send each slide that verified clean to this DICOMweb (STOW-RS) base URL.", rich_help_panel="Delivery")
    ] = None,
    dimse: Annotated[
        Optional[str], typer.Option("--dimse", help="Send each slide that verified clean by C-STORE to HOST:PORT.", rich_help_panel="Delivery")
    ] = None,
    aet: Annotated[Optional[str], typer.Option("--aet", help="Our AE title for --dimse.", rich_help_panel="Delivery")] = None,
    aec: Annotated[Optional[str], typer.Option("--aec", help="The store's AE title for --dimse.", rich_help_panel="Delivery")] = None,
    ca_bundle: Annotated[
        Optional[Path], typer.Option("--ca-bundle", help="CA certificates (PEM) that sign the DICOMweb server's certificate.", rich_help_panel="Delivery")
    ] = None,
    client_cert: Annotated[
        Optional[Path], typer.Option("--client-cert", help="Client certificate (PEM) for DICOMweb mutual TLS.", rich_help_panel="Delivery")
    ] = None,
    client_key: Annotated[Optional[Path], typer.Option("--client-key", help="Private key of --client-cert.", rich_help_panel="Delivery")] = None,
    delivery_config: Annotated[
        Optional[Path],
        typer.Option(
            "--delivery-config",
            help="TOML file (mode 0600) with DICOMweb credentials. Default: $WSIANON_DELIVERY_CONFIG or ~/.config/wsianon/delivery.toml.",
            rich_help_panel="Delivery",
        ),
    ] = None,
    max_instance_size: Annotated[
        Optional[str],
        typer.Option(
            "--max-instance-size",
            help="Upload limit of the store (e.g. 500M): STOW-RS requests are split to fit, a larger instance is refused.",
            rich_help_panel="Delivery",
        ),
    ] = None,
) -> None:
    """Anonymize slides and verify the outputs. Exit 0: all clean; 1: some slide failed or an input/OUT was refused; 2: usage error; 130/143: stopped by Ctrl-C/SIGTERM (resumable).

    A job is resumable: running the same command again skips the slides already done (see
    OUT.wsianon-job.sqlite beside OUT and 'wsianon status OUT')."""
    from wsianon.pipeline.jobs import JobConfig

    if out is None and not (in_place or dry_run):
        _fail("an output folder is required: -o OUT (or --in-place / --dry-run)")
    if not inputs and from_file is None:
        _fail("no inputs: name slides or folders, or --from-file LIST")
    if in_place and target is Target.dicom:
        _fail("--in-place works with --target native only")
    if send_key and not scheduler:
        _fail("--send-key applies to --scheduler only")
    sheet = None if (out is None or dry_run or no_review_sheet) else _review_sheet_path(out, review_sheet, key_file, mapping, log)
    if not dry_run:  # before the log is opened: nothing is written into another job's OUT
        _refuse_shared(out, [("--review-sheet", sheet), ("--mapping", mapping), ("--quarantine", quarantine), ("--log", log)])
    deliverer = None
    if dicomweb or dimse:
        if target is not Target.dicom or dry_run or out is None:
            _fail("--dicomweb/--dimse deliver DICOM outputs: use them with --target dicom and -o OUT")
        deliverer = _deliverer(out, _destination(dicomweb, dimse, aet, aec, ca_bundle, client_cert, client_key, delivery_config, max_instance_size))
    policy = _policy(
        label=label.value,
        macro=macro.value,
        thumbnail=thumbnail.value,
        dates=dates.value,
        rename=rename.value,
        dry_run=dry_run,
        in_place=in_place,
        allow_generic=allow_generic,
        overwrite=overwrite,
        dicom_options=_dicom_options(profile),
        mpp=mpp,
        accept_unrun_checks=accept_unrun_checks,
        coded_data=coded_data.value,
    )
    cfg = JobConfig(
        inputs=list(inputs or []),
        out=out,
        target=target.value,
        policy=policy,
        key_file=key_file,
        mapping=mapping,
        quarantine=quarantine,
        pseudonyms=pseudonyms,
        workers=workers,
        pseudonym_from=pseudonym_from.value,
        strict=strict,
        retry_failed=retry_failed,
        from_file=from_file,
        input_root=input_root,
        include=list(include or []),
        exclude=list(exclude or []),
        scheduler=scheduler,
        send_key=send_key,
        full_hash=full_hash,
        log=log,
    )
    result, deliveries = _run_job_on_console(cfg, deliverer, json_out=json_out, log=None if dry_run else log)
    if sheet is not None:
        sheet = _write_sheet(out, sheet, result)
    if dry_run:
        print(json.dumps(result.plans, indent=2))
    if json_out and result.report_path:
        print(result.report_path.read_text())
    elif json_out and result.report is not None:  # in place: no OUT to write the report into
        print(json.dumps(result.report, indent=2))
    msg = _run_summary(result, out, dry_run, sheet, deliverer, deliveries)
    (err_console if json_out else out_console).print(msg, highlight=False, soft_wrap=True)
    raise typer.Exit(max(result.exit_code, 1 if any(not d.ok for d in deliveries) else 0))


def _refuse_shared(out: Path | None, private: list) -> None:
    """OUT inside another job's OUT, or a private file inside any wsianon OUT: one line, exit 1."""
    from wsianon.pipeline import sharedout

    try:
        if out is not None:
            sharedout.refuse_out_in_shared(out)
        sharedout.refuse_private_in_shared([(w, p) for w, p in private if p is not None], own=out)
    except WsianonError as exc:
        _fail(exc.one_line(), 1)


def _review_sheet_path(out: Path, review_sheet: Path | None, key_file: Path | None, mapping: Path | None, log: Path | None) -> Path:
    """The private review sheet's path (default OUT.review.html beside OUT); never inside OUT, never
    one of the job's other private files (it would replace the key, the manifest or the mapping)."""
    from wsianon.pipeline.batch import refuse_clashes
    from wsianon.pipeline.jobs import default_side_paths
    from wsianon.pipeline.keys import key_path
    from wsianon.pipeline.manifest import manifest_path
    from wsianon.pipeline.record import is_inside

    sheet = review_sheet or out.resolve().parent / f"{out.resolve().name}.review.html"
    if is_inside(sheet, out):
        _fail(f"{sheet}: the review sheet shows the sources' labels and macros (identifying); it is never written inside OUT")
    try:
        refuse_clashes(
            {
                "--review-sheet": sheet,
                "--mapping": mapping or default_side_paths(out)[0],
                "--log": log,
                "the job manifest": manifest_path(Path(os.path.abspath(out))),
                "the key file": key_path(key_file),
            }
        )
    except WsianonError as exc:
        _fail(exc.one_line())
    return sheet


def _deliverer(out: Path, dest):
    from wsianon.pipeline.deliver import Deliverer

    try:
        return Deliverer(out, dest)
    except WsianonError as exc:
        _fail(exc.one_line())


CODED_DATA_HELP = (
    "How many tiles (frames) a verification decodes to prove their coded image data holds no bytes a decoder skips "
    "(text hidden after a JPEG scan's last coded unit, a Deflate stream or a JPEG 2000 codestream): sample = up to 32 "
    "tiles a pyramid level, spread evenly; all = every tile (about 10 ms of CPU per MB of tiles: a 2 GB slide takes 20 s longer)."
)


def _dicom_options(profile: list[str] | None) -> frozenset[str]:
    """The --profile words as Annex E option names (a usage error names the unknown word)."""
    from wsianon.profiles import dicom as dicom_profiles

    try:
        return frozenset(dicom_profiles.parse_options(profile or []))
    except ValueError as exc:
        _fail(str(exc))


def _policy(**options):
    from wsianon.profiles.policy import Policy

    try:
        return Policy(**options)
    except ValueError as exc:
        _fail(str(exc))


def _run_job_on_console(cfg, deliverer, *, json_out: bool, log: Path | None):
    """Run the job with the progress console; with a deliverer, send each slide as soon as it is
    placed verified clean, then the slides an earlier (resumed) run verified.  Returns the job's
    result and the delivery results; user errors end the command with one line."""
    from wsianon.jobconsole import BatchConsole
    from wsianon.pipeline.batch import JobInterrupted
    from wsianon.pipeline.jobs import run_job

    deliveries: list = []
    delivered: set[str] = set()

    def with_delivery(on_event):
        if deliverer is None:
            return on_event

        def wrapped(kind: str, **info) -> None:
            on_event(kind, **info)
            o = info.get("outcome") if kind == "slide" else None
            if o is not None and o.status == Status.OK and o.verdict is not None and o.verdict.ok:
                delivered.add(o.input_label)
                deliveries.append(_print_delivery(deliverer.deliver_slide(o.input_label, o.outputs, o.files), quiet_stdout=json_out))

        return wrapped

    quiet = json_out or not err_console.is_terminal
    stopped = _stop_on_signals()
    try:
        with BatchConsole(out_console, err_console, quiet=quiet, json_out=json_out, log=log) as on_event:
            result = run_job(cfg, on_event=with_delivery(on_event))
        if deliverer is not None and result.report_path is not None:
            deliveries.extend(_deliver_earlier(cfg.out, deliverer, delivered, json_out))
    except WsianonError as exc:
        _fail(exc.one_line(), 1 if exc.path else 2)
    except OSError as exc:  # the --log file, a vanished folder: one line, never a traceback
        _fail(f"{safe_text(exc.filename or '')}: {os_reason(exc)}", 1)
    except JobInterrupted as exc:
        if exc.unlisted:
            # the safety net: files in OUT the record does not list (workers leave their outputs
            # staged for the job to place, so only a Dask task still running when the job
            # stopped, or a file put into OUT meanwhile, leaves one): OUT does not match its
            # record until the resume
            err_console.print(
                f"{exc.summary}; nothing partial was placed in OUT, but {exc.unlisted} file(s) in it are not yet in the record "
                "(a slide still finishing on a Dask worker, or a file put into OUT meanwhile): OUT is NOT ready to share; run the same command again to resume",
                highlight=False,
                soft_wrap=True,
            )
        else:
            err_console.print(f"{exc.summary}; nothing partial was placed in OUT; run the same command again to resume", highlight=False, soft_wrap=True)
        raise typer.Exit(stopped() or 130) from None
    except KeyboardInterrupt:
        err_console.print("interrupted: no partial output was placed in OUT", soft_wrap=True)
        raise typer.Exit(stopped() or 130) from None
    finally:
        stopped(restore=True)
        if deliverer is not None:
            deliverer.close()
    return result, deliveries


def _stop_on_signals():
    """Ctrl-C (SIGINT) and SIGTERM (kill, systemd, a batch scheduler, docker stop) stop the job
    cleanly: the workers stopped, the slides in flight requeued, the staging folders removed, the
    run marked interrupted in the manifest, one line; exit 130 (SIGINT) or 143 (SIGTERM).  Before,
    SIGTERM killed the process mid-slide (a staging folder left in OUT, the run 'running' in the
    manifest), and either signal arriving in logging's fork handler (run each time a worker or a
    subprocess is forked) was ignored there and left logging's lock held: the run then hung.
    Returns a function: ``()`` the exit status for the signal that came (None: none came),
    ``(restore=True)`` puts the former handlers back."""
    import signal

    from wsianon.io.atomic import defer_stop
    from wsianon.pipeline.batch import STOP

    seen: list[int] = []
    again = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}  # a second signal: as without us
    try:
        before = {sig: signal.getsignal(sig) for sig in again}
    except ValueError:  # not the main thread: nothing is installed
        return lambda restore=False: None
    STOP.clear()

    def on_signal(signum, frame):
        seen.append(signum)
        STOP.set()  # the job also stops at its next slide boundary (batch.drive): the backstop below
        signal.signal(signum, again[signum])
        if frame is not None and frame.f_globals.get("__name__") == "logging":
            # inside logging's lock handling (its fork handler runs here): an exception there is
            # ignored and leaves the lock held; the slide boundary stops the job instead
            return
        if defer_stop():  # placing and recording a slide: stopped as that ends (io.atomic.uninterrupted)
            return
        raise KeyboardInterrupt

    try:
        for sig in again:
            signal.signal(sig, on_signal)
    except ValueError:
        return lambda restore=False: None

    def stopped(restore: bool = False) -> int | None:
        if restore:
            for sig, handler in before.items():
                signal.signal(sig, handler)
            STOP.clear()
        return 128 + seen[0] if seen else None

    return stopped


def _deliver_earlier(out: Path, deliverer, delivered: set[str], json_out: bool) -> list:
    """Slides verified in an earlier (resumed) run that the store has not acknowledged yet."""
    from wsianon.pipeline.deliver import verified_slides

    results = []
    earlier, report_time = verified_slides(out)
    for s in earlier:
        if str(s.get("slide")) not in delivered:
            r = deliverer.deliver_slide(str(s.get("slide")), s.get("outputs") or [], s.get("files"), verified_before=report_time)
            if r.sent or not r.ok:
                results.append(_print_delivery(r, quiet_stdout=json_out))
    return results


def _write_sheet(out: Path | None, sheet: Path, result) -> Path | None:
    """The private review sheet, when something was anonymized (an error is one line, not fatal)."""
    from wsianon.pipeline.record import write_review_sheet

    if not (result.report_path and result.mapping_path):
        return None  # nothing was anonymized: no source to show
    assert out is not None, "a review sheet is only planned with -o OUT"
    try:
        write_review_sheet(out, sheet, result.mapping_path, result.quarantine_dir, data=result.record)
    except WsianonError as exc:
        err_console.print(f"[red]error:[/red] {safe_text(exc.one_line())}", highlight=False, soft_wrap=True)
        return None
    return sheet


def _run_summary(result, out: Path | None, dry_run: bool, sheet: Path | None, deliverer, deliveries: list) -> str:
    """The closing lines: counts by status, then where the report, outputs and private files are."""
    counts: dict[str, int] = {}
    for o in result.outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    total = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    msg = f"{len(result.outcomes)} slide(s): {total}"
    if getattr(result, "already_done", 0):
        msg += f" ({result.already_done} already done before this run)"
    if getattr(result, "skipped_inputs", 0):
        msg += f"; {result.skipped_inputs} input file(s) are not slides (listed as skipped in the report)"
    if result.report_path:
        msg += f"\nreport:  {safe_text(result.report_path)} (+ {result.report_path.with_suffix('.html').name}, wsianon-certificate.json/.pdf)"
    if out is not None and not dry_run:
        msg += f"\noutputs: {safe_text(out)}"
    if result.mapping_path:
        msg += f"\nmapping (private, keep outside OUT): {safe_text(result.mapping_path)}"
    if sheet is not None:
        msg += f"\nreview sheet (PRIVATE: shows the sources' labels and macros, identifying; never share): {safe_text(sheet)}"
    if getattr(result, "unlisted", None):
        msg += (
            f"\nOUT is NOT ready to share: {len(result.unlisted)} file(s) in it are neither verified outputs of this job nor its record"
            f" (put there after a run, or changed since): wsianon certify --check {safe_text(out)} names them"
        )
    unrun = sorted({c.name for o in result.outcomes if o.verdict is not None for c in o.verdict.checks if c.not_run and c.ok})
    if unrun:
        n = sum(1 for o in result.outcomes if o.verdict is not None and any(c.not_run and c.ok for c in o.verdict.checks))
        msg += f"\nchecks NOT RUN on {n} slide(s), accepted by --accept-unrun-checks (the report and certificate say so): {safe_text(', '.join(unrun))}"
    if any(o.status == Status.FAILED for o in result.outcomes) and result.quarantine_dir:
        msg += f"\nquarantine (failed verification): {safe_text(result.quarantine_dir)}"
    if deliverer is not None:
        undelivered = sum(1 for d in deliveries if not d.ok)
        msg += f"\ndelivered to {safe_text(deliverer.dest.key)}: {len(deliveries) - undelivered} slide(s) complete"
        if undelivered:
            msg += f", {undelivered} incomplete (resume with: wsianon push {safe_text(out)} ...)"
    return msg


def _destination(dicomweb, dimse, aet, aec, ca_bundle, client_cert, client_key, delivery_config, max_instance_size):
    """The destination of --dicomweb / --dimse (credentials from the environment or the config file)."""
    from wsianon.pipeline.deliver import Destination, load_credentials, parse_size

    if bool(dicomweb) == bool(dimse):
        _fail("give one destination: --dicomweb URL or --dimse HOST:PORT --aet OURS --aec THEIRS")
    try:
        limit = parse_size(max_instance_size) if max_instance_size else None
        if dicomweb:
            creds = load_credentials(delivery_config)
            for attr, val in (("ca_bundle", ca_bundle), ("client_cert", client_cert), ("client_key", client_key)):
                if val is not None:
                    setattr(creds, attr, val)
            for attr in ("ca_bundle", "client_cert", "client_key"):
                f = getattr(creds, attr)
                if f is not None and not Path(f).is_file():
                    _fail(f"{f}: {attr.replace('_', '-')} file not found")
            dest = Destination.dicomweb(dicomweb, creds, max_instance_bytes=limit)
        else:
            if ca_bundle or client_cert or client_key:
                _fail("--ca-bundle/--client-cert/--client-key apply to --dicomweb only")
            dest = Destination.dimse(dimse, aet, aec, max_instance_bytes=limit)
        return dest
    except ValueError as exc:
        _fail(str(exc))
    except WsianonError as exc:
        _fail(exc.one_line())


def _print_delivery(d, quiet_stdout: bool = False):
    if d.ok:
        (err_console if quiet_stdout else out_console).print(f"[green]SENT    [/green] {d.line()}", highlight=False, soft_wrap=True)
    else:
        err_console.print(f"[red]error:[/red] delivery {d.line()}", highlight=False, soft_wrap=True)
    return d


@app.command(cls=_OptionsOnce)
def push(
    out: Annotated[Path, typer.Argument(help="An output folder of wsianon run --target dicom (its report lists what verified clean).", show_default=False)],
    dicomweb: Annotated[Optional[str], typer.Option("--dicomweb", help="DICOMweb (STOW-RS) base URL.")] = None,
    dimse: Annotated[Optional[str], typer.Option("--dimse", help="C-STORE to HOST:PORT.")] = None,
    aet: Annotated[Optional[str], typer.Option("--aet", help="Our AE title for --dimse.")] = None,
    aec: Annotated[Optional[str], typer.Option("--aec", help="The store's AE title for --dimse.")] = None,
    ca_bundle: Annotated[Optional[Path], typer.Option("--ca-bundle", help="CA certificates (PEM) for the DICOMweb server.")] = None,
    client_cert: Annotated[Optional[Path], typer.Option("--client-cert", help="Client certificate (PEM) for mutual TLS.")] = None,
    client_key: Annotated[Optional[Path], typer.Option("--client-key", help="Private key of --client-cert.")] = None,
    delivery_config: Annotated[Optional[Path], typer.Option("--delivery-config", help="TOML file (mode 0600) with DICOMweb credentials.")] = None,
    max_instance_size: Annotated[Optional[str], typer.Option("--max-instance-size", help="Upload limit of the store (e.g. 500M).")] = None,
) -> None:
    """Send the verified DICOM outputs of OUT to a DICOM store; only what it has not acknowledged yet. Exit 1 if anything is left undelivered."""
    from wsianon.pipeline.deliver import push_out

    if not out.is_dir():
        _fail(f"{out}: not a folder")
    dest = _destination(dicomweb, dimse, aet, aec, ca_bundle, client_cert, client_key, delivery_config, max_instance_size)
    try:
        results = push_out(out, dest, on_slide=_print_delivery)
    except WsianonError as exc:
        _fail(exc.one_line(), 1)
    sent = sum(r.sent for r in results)
    already = sum(r.already for r in results)
    bad = [r for r in results if not r.ok]
    msg = f"{len(results)} verified slide(s) to {dest.key}: {sent} instance(s) sent, {already} already acknowledged"
    if bad:
        msg += f"; {len(bad)} slide(s) incomplete (run push again to resume)"
    out_console.print(msg, highlight=False, soft_wrap=True)
    raise typer.Exit(1 if bad or not results else 0)


@app.command(cls=_OptionsOnce)
def inspect(
    inputs: Annotated[list[Path], typer.Argument(help="Slides to inspect.", show_default=False)],
    show_values: Annotated[bool, typer.Option("--show-values", help="Also print the identifying values themselves (careful: sensitive).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    allow_generic: Annotated[bool, typer.Option("--allow-generic", help="Also inspect TIFFs no vendor redactor claims.")] = False,
) -> None:
    """List the identifying content a slide holds: metadata fields, label/macro images. Values are hidden unless --show-values. Exit 1 if an input could not be read."""
    from wsianon.pipeline.detect import expand_inputs
    from wsianon.pipeline.inspect import inspect_source
    from wsianon.profiles.policy import Policy

    slides = expand_inputs(inputs, allow_generic)
    results = []
    code = 0
    for s in slides:
        if s.error is not None:
            err_console.print(f"[red]error:[/red] {safe_text(s.error.one_line())}", highlight=False, soft_wrap=True)
            code = 1
            continue
        try:
            inv = inspect_source(s, Policy())
        except WsianonError as exc:
            err_console.print(f"[red]error:[/red] {safe_text(exc.one_line())}", highlight=False, soft_wrap=True)
            code = 1
            continue
        except Exception as exc:  # a bug: one line naming the file, never the message (it can quote the slide)
            from wsianon.io.quiet import debug_traceback

            debug_traceback(exc)
            err_console.print(f"[red]error:[/red] {safe_text(s.path)}: internal error ({type(exc).__name__})", highlight=False, soft_wrap=True)
            code = 1
            continue
        pub = inv.public(show_values)
        if not show_values:  # a name the source chose (a key, an element) may itself identify: vocabulary only
            pub["fields"] = [safe_removal(f) for f in pub["fields"]]
        pub["path"] = str(s.path)
        results.append(pub)
        if not json_out:
            # the heading on its own line, never wrapped (a table title is wrapped at the console's
            # width, which broke a long path in two)
            out_console.print(f"{safe_text(s.path)} — {safe_text(inv.format)}, {inv.levels} level(s)", highlight=False, soft_wrap=True)
            t = Table(show_lines=False)
            t.add_column("field")
            t.add_column("where")
            t.add_column("action")
            if show_values:
                t.add_column("value")
            for f in pub["fields"]:
                row = [safe_text(f["name"]), safe_text(f["where"]), safe_text(f["action"])]
                if show_values:
                    row.append(safe_text(f.get("value", "")))
                t.add_row(*row)
            out_console.print(t)
            for img in pub["associated_images"]:
                out_console.print(
                    f"  image {safe_text(img['kind']):10} {safe_text(img['where']):12} identifying={img['identifying']} -> {safe_text(img['action'])}",
                    highlight=False,
                    soft_wrap=True,
                )
            if not show_values:
                out_console.print("  (values hidden; --show-values prints them)", style="dim")
    if json_out:
        print(json.dumps(results, indent=2))
    raise typer.Exit(code)


@app.command(cls=_OptionsOnce)
def verify(
    paths: Annotated[list[Path], typer.Argument(help="Anonymized outputs (or any slides) to audit.", show_default=False)],
    source: Annotated[Optional[Path], typer.Option("--source", help="The original slide, to compare against (canaries, tiles).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    allow_generic: Annotated[bool, typer.Option("--allow-generic", help="Also audit TIFFs no vendor redactor claims.")] = False,
    pseudonyms: Annotated[
        Optional[Path],
        typer.Option(
            "--pseudonyms",
            help="The map given to run --pseudonyms: its slide and patient pseudonyms are accepted where an output names its slide or patient.",
        ),
    ] = None,
    coded_data: Annotated[CodedData, typer.Option("--coded-data", help=CODED_DATA_HELP)] = CodedData.sample,
    profile: Annotated[
        Optional[list[str]],
        typer.Option(
            "--profile",
            help="DICOM outputs: the --profile option(s) given to run (e.g. retain-device-identity); an option an output records but was not given here is a finding.",
        ),
    ] = None,
    dates: Annotated[
        DatesPolicy, typer.Option(help="DICOM outputs: the --dates given to run (keep and year record a Retain dates option).")
    ] = DatesPolicy.remove,
    rename: Annotated[
        RenamePolicy,
        typer.Option(
            help="The --rename given to run: with keep, a native slide's file name (an MRXS slide's folder) is the source's on request and not judged; every other name is."
        ),
    ] = RenamePolicy.pseudonym,
) -> None:
    """Audit outputs: structure, residual identifying metadata, associated images, canary values. Exit 1 if anything remains."""
    from wsianon.pipeline.audit import audit_paths
    from wsianon.pipeline.pseudonyms import load_pseudonym_map
    from wsianon.profiles.dicom import profile_for_policy

    # the options come from the user, as given to run: an output's own record of them is a claim
    dicom_profile = profile_for_policy(_policy(dates=dates.value, dicom_options=_dicom_options(profile)))
    try:
        names = load_pseudonym_map(pseudonyms).names() if pseudonyms is not None else None
        verdicts = audit_paths(
            paths,
            source=source,
            allow_generic=allow_generic,
            pseudonyms=names,
            coded_data=coded_data.value,
            dicom_profile=dicom_profile,
            rename_keep=rename is RenamePolicy.keep,
        )
    except WsianonError as exc:
        _fail(exc.one_line(), 1)
    code = 0
    report = []
    for path, verdict, err in verdicts:
        if err is not None:
            err_console.print(f"[red]error:[/red] {safe_text(err.one_line())}", highlight=False, soft_wrap=True)
            code = 1
            continue
        report.append({"path": str(path), **verdict.as_dict()})
        if not verdict.ok:
            code = 1
        if not json_out:
            style = "green" if verdict.ok else "red"
            out_console.print(f"[{style}]{'CLEAN' if verdict.ok else 'NOT CLEAN'}[/{style}] {safe_text(path)}", highlight=False, soft_wrap=True)
            for c in verdict.checks:
                mark = "[green]ok[/green]  " if c.ok else "[red]FAIL[/red]"
                out_console.print(f"  {mark} {safe_text(c.name)}: {safe_text(c.detail)}", highlight=False, soft_wrap=True)
            for f in verdict.findings:
                out_console.print(
                    f"  [red]residual[/red] {safe_text(f.canary)} ({safe_text(f.encoding)}) in {safe_text(f.file)} at byte {f.offset}",
                    highlight=False,
                    soft_wrap=True,
                )
    if json_out:
        print(json.dumps(report, indent=2))
    raise typer.Exit(code)


@app.command(cls=_OptionsOnce)
def certify(
    out: Annotated[Path, typer.Argument(help="An output folder wsianon wrote (holding wsianon-report.json).", show_default=False)],
    check: Annotated[
        bool, typer.Option("--check", help="Re-hash every output and confirm the certificate still matches (exit 1 and one line per mismatch if not).")
    ] = False,
    review_sheet: Annotated[
        Optional[Path], typer.Option("--review-sheet", help="Also write the PRIVATE review sheet here (identifying; never inside OUT).")
    ] = None,
    mapping: Annotated[
        Optional[Path], typer.Option("--mapping", help="Private source→output CSV for the review sheet. Default: OUT.mapping.csv beside OUT.")
    ] = None,
    key_file: Annotated[
        Optional[Path], typer.Option("--key-file", help="The job's key, to record its fingerprint (never the key). Default: the fingerprint already recorded.")
    ] = None,
) -> None:
    """Write (again) the HTML report and the certificate (JSON + PDF) of OUT, or --check them against the outputs."""
    from wsianon.pipeline import record
    from wsianon.pipeline.keys import load_or_create_key

    if check:
        cert, problems = record.check_certificate(out)
        for p in problems:
            err_console.print(f"mismatch: {safe_text(p)}", highlight=False, soft_wrap=True, markup=False)
        if problems:
            err_console.print(f"NOT CONFIRMED: {len(problems)} mismatch(es) against {record.CERT_JSON}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        assert cert is not None, "an unreadable certificate is reported as a problem"
        n = len(cert.get("outputs") or [])
        pages = sum(1 for r in cert.get("reports") or [] if isinstance(r, dict) and record.is_card_page(str(r.get("file"))))
        what = f"the reports and {pages} card page(s)" if pages else "the reports"
        out_console.print(f"CONFIRMED certificate {cert.get('certificate_id')}: {n} output file(s) and {what} match", highlight=False, soft_wrap=True)
        raise typer.Exit(0)
    code = 0
    try:
        if key_file is not None and not key_file.is_file():
            _fail(f"{key_file}: no such key file", 2)

        def rendering(done: int, total: int) -> None:
            if done == 0:
                err_console.print(record.RENDERING.format(total), highlight=False, soft_wrap=True)

        if review_sheet is not None:  # before anything is written: never into a wsianon OUT
            if record.is_inside(review_sheet, out):
                _fail(f"{review_sheet}: the review sheet shows the sources' labels and macros (identifying); it is never written inside OUT", 1)
            _refuse_shared(None, [("--review-sheet", review_sheet)])
        keep: dict = {}
        # an output that no longer matches what the run verified (changed, added to a slide's
        # folder, gone) is refused with one line naming it: never a certificate that leaves it out
        paths = record.write_record(out, key=load_or_create_key(key_file) if key_file else None, on_render=rendering, keep=keep, refuse_changed=True)
        card_pages = record.card_pages(out)
        more = f" (+ {len(card_pages)} card page(s) in {out / record.CARDS_DIR})" if card_pages else ""
        out_console.print(f"report:      {paths['html']}{more}\ncertificate: {paths['certificate']} (+ {paths['pdf'].name})", highlight=False, soft_wrap=True)
        stray = record.unlisted_files(out)
        if stray:  # as a run says it: a file in OUT that is neither a certified output nor the record
            err_console.print(
                f"OUT is NOT ready to share: {len(stray)} file(s) in it are neither certified outputs nor the record"
                f" (put there after a run): wsianon certify --check {safe_text(out)} names them",
                highlight=False,
                soft_wrap=True,
            )
            code = 1
        if review_sheet is not None:
            sheet = record.write_review_sheet(out, review_sheet, mapping, data=keep.get("record"))
            out_console.print(
                f"review sheet (PRIVATE: shows the sources' labels and macros, identifying; never share): {sheet}", highlight=False, soft_wrap=True
            )
    except WsianonError as exc:
        _fail(exc.one_line(), 1)
    raise typer.Exit(code)


@app.command(cls=_OptionsOnce)
def rollback(
    paths: Annotated[list[Path], typer.Argument(help="Files an interrupted --in-place run left a journal for.", show_default=False)],
    discard: Annotated[bool, typer.Option("--discard", help="Remove the journal without touching the file (after you checked the file yourself).")] = False,
) -> None:
    """Restore files from the journal an interrupted --in-place run left behind (checked against the file first)."""
    from wsianon.io.journal import discard as discard_journal
    from wsianon.io.plan import rollback_journal

    code = 0
    for p in paths:
        try:
            if discard:
                done = discard_journal(p)
                if done:
                    out_console.print(f"journal removed, file not touched: {safe_text(p)}", highlight=False, soft_wrap=True)
            else:
                done = rollback_journal(p)
                if done:
                    out_console.print(f"restored {safe_text(p)}", highlight=False, soft_wrap=True)
            if not done:
                err_console.print(f"[red]error:[/red] {safe_text(p)}: no journal found", highlight=False, soft_wrap=True)
                code = 1
        except WsianonError as exc:
            err_console.print(f"[red]error:[/red] {safe_text(exc.one_line())}", highlight=False, soft_wrap=True)
            code = 1
        except OSError as exc:
            err_console.print(f"[red]error:[/red] {safe_text(p)}: {os_reason(exc)}", highlight=False, soft_wrap=True)
            code = 1
    raise typer.Exit(code)


@app.command(cls=_OptionsOnce)
def status(
    out: Annotated[Path, typer.Argument(help="The output folder of a job.", show_default=False)],
) -> None:
    """Summarize a job's manifest: slides per state, failures with reasons, throughput. Exit 1 while slides are failed or unfinished.

    Failures are named by the source's path on a terminal only; piped or redirected output names them by pseudonym (as run's per-slide lines)."""
    from wsianon.jobconsole import status_text

    try:
        text, code = status_text(out, sources=out_console.is_terminal)
    except WsianonError as exc:
        _fail(exc.one_line(), 1)
    out_console.print(text, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


key_app = typer.Typer(help="Project keys (pseudonyms and UIDs are keyed hashes).", no_args_is_help=True)
app.add_typer(key_app, name="key")


@key_app.command("init", cls=_OptionsOnce)
def key_init(
    path: Annotated[Path, typer.Argument(help="Where to create the key file (mode 0600).", show_default=False)],
) -> None:
    """Create a new random project key; refuses to replace an existing one."""
    from wsianon.pipeline.keys import init_key, key_fingerprint

    try:
        key = init_key(path)
    except WsianonError as exc:
        _fail(exc.one_line(), 1)
    out_console.print(f"created {path} (fingerprint {key_fingerprint(key)}); keep it private and backed up", highlight=False, soft_wrap=True)


def main() -> None:
    from wsianon.io.quiet import quiet_libraries

    # library warnings and log records (pydicom's VR complaints, tifffile's parse errors) can quote
    # values from the slide: the report carries what matters, so they stay quiet unless debugging
    quiet_libraries()
    from wsianon.io.memory import collect_less_often, limit_malloc_arenas, no_teardown_collections

    limit_malloc_arenas()  # before any thread: one arena, a peak RSS that does not drift (wsianon/io/memory.py)
    collect_less_often()  # fewer cyclic collections (a DICOM conversion's many small objects)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug: its message can quote what a library read from a slide, so it is not printed
        if os.environ.get("WSIANON_DEBUG"):
            raise
        err_console.print(
            f"error: internal error ({type(exc).__name__}); set WSIANON_DEBUG=1 to see its details", highlight=False, markup=False, soft_wrap=True
        )
        sys.exit(1)
    finally:
        no_teardown_collections()  # the work is done: teardown skips collecting what is left


if __name__ == "__main__":
    main()
