"""Command-line front end (typer). Parsing and printing only; the work is in wsianon.pipeline."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from wsianon import __version__
from wsianon.errors import WsianonError
from wsianon.io.safetext import os_reason, safe_text

app = typer.Typer(
    name="wsianon",
    help=(
        "Remove every trace of patient identity from whole slide images — label and macro photos, "
        "scanner metadata, file names — and prove that nothing was left behind.\n\n"
        "Formats: Aperio SVS (incl. GT450), Hamamatsu NDPI, 3DHistech MRXS, Roche/Ventana BIF, "
        "Philips TIFF, Leica SCN, DICOM WSI."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
out_console = Console()
err_console = Console(stderr=True)


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

    display_type_rich._wsianon = True
    opt.display_type_rich = display_type_rich


_flags_take_no_value()


class Target(str, Enum):
    native = "native"
    dicom = "dicom"


class LabelOpt(str, Enum):
    remove = "remove"
    blank = "blank"


class MacroOpt(str, Enum):
    remove = "remove"
    keep = "keep"


class DatesOpt(str, Enum):
    remove = "remove"
    year = "year"
    keep = "keep"


class RenameOpt(str, Enum):
    pseudonym = "pseudonym"
    keep = "keep"


def _version(value: bool) -> None:
    if value:
        out_console.print(f"wsianon {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


def _fail(msg: str, code: int = 2) -> None:
    err_console.print(f"[red]error:[/red] {safe_text(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _status_style(status: str) -> str:
    return {"ok": "green", "dry-run": "cyan", "failed": "red", "error": "red"}.get(status, "white")


@app.command()
def run(
    inputs: Annotated[list[Path], typer.Argument(help="Slides, slide folders or DICOM folders to anonymize.", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Output folder (shareable: only pseudonymised names and the report go here).")] = None,
    target: Annotated[Target, typer.Option("--target", help="native: keep the vendor format; dicom: convert to DICOM WSI and apply PS3.15 Annex E.")] = Target.native,
    label: Annotated[LabelOpt, typer.Option(help="Label image: remove it, or replace it by a blank image of the same size.")] = LabelOpt.remove,
    macro: Annotated[MacroOpt, typer.Option(help="Macro/overview image (usually shows the label): remove or keep.")] = MacroOpt.remove,
    dates: Annotated[DatesOpt, typer.Option(help="Acquisition dates and times: remove, keep the year only, or keep.")] = DatesOpt.remove,
    rename: Annotated[RenameOpt, typer.Option(help="Output file names: keyed pseudonym (default) or the source name.")] = RenameOpt.pseudonym,
    profile: Annotated[Optional[list[str]], typer.Option("--profile", help="DICOM profile option(s) added to the Basic Profile (see README), e.g. retain-device-identity.")] = None,
    pseudonyms: Annotated[Optional[Path], typer.Option("--pseudonyms", help="CSV: source, slide pseudonym[, patient pseudonym[, study pseudonym]].")] = None,
    key_file: Annotated[Optional[Path], typer.Option("--key-file", help="Project key (created with mode 0600 on first use). Default: ~/.config/wsianon/key or $WSIANON_KEY_FILE.")] = None,
    mapping: Annotated[Optional[Path], typer.Option("--mapping", help="Private source→output CSV (mode 0600). Default: OUT.mapping.csv beside OUT.")] = None,
    quarantine: Annotated[Optional[Path], typer.Option("--quarantine", help="Where slides that fail verification go. Default: OUT.quarantine beside OUT.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (what would be removed, by field name) and write nothing.")] = False,
    in_place: Annotated[bool, typer.Option("--in-place", help="Patch the input files themselves (journaled, verified, rolled back on failure). Never the default.")] = False,
    allow_generic: Annotated[bool, typer.Option("--allow-generic", help="Anonymize TIFFs no vendor redactor claims, fail-closed.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist in OUT.")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Slides processed in parallel.")] = 1,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Anonymize slides and verify the outputs. Exit 0: all clean; 1: some slide failed; 2: usage error."""
    from wsianon.pipeline.jobs import JobConfig, run_job
    from wsianon.profiles.policy import Policy

    if out is None and not (in_place or dry_run):
        _fail("an output folder is required: -o OUT (or --in-place / --dry-run)")
    if in_place and target is Target.dicom:
        _fail("--in-place works with --target native only")
    try:
        from wsianon.profiles import dicom as dicom_profiles  # noqa: F401

        options = frozenset(dicom_profiles.parse_options(profile or [])) if hasattr(dicom_profiles, "parse_options") else frozenset(profile or [])
    except ImportError:
        options = frozenset(profile or [])
    except ValueError as exc:
        _fail(str(exc))
    try:
        policy = Policy(
            label=label.value,
            macro=macro.value,
            dates=dates.value,
            rename=rename.value,
            dry_run=dry_run,
            in_place=in_place,
            allow_generic=allow_generic,
            overwrite=overwrite,
            dicom_options=options,
        )
    except ValueError as exc:
        _fail(str(exc))
    cfg = JobConfig(
        inputs=inputs,
        out=out,
        target=target.value,
        policy=policy,
        key_file=key_file,
        mapping=mapping,
        quarantine=quarantine,
        pseudonyms=pseudonyms,
        workers=workers,
    )
    quiet = json_out or not err_console.is_terminal
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=quiet,
    )
    task_ids: dict = {}

    def on_event(kind: str, **info) -> None:
        if kind == "slide-start":
            task_ids["cur"] = progress.add_task(safe_text(info["label"]), total=max(info.get("size", 0), 1) * 2)
        elif kind == "bytes" and "cur" in task_ids:
            progress.advance(task_ids["cur"], info["n"])
        elif kind == "slide":
            if "cur" in task_ids:
                progress.remove_task(task_ids.pop("cur"))
            o = info["outcome"]
            src = info.get("source")
            style = _status_style(o.status)
            line = f"[{style}]{o.status.upper():8}[/{style}] {safe_text(o.input_label)}"
            if o.format:
                line += f" ({safe_text(o.format)})"
            if o.outputs:
                line += f" -> {safe_text(', '.join(o.outputs))}"
            if o.status == "dry-run" and src is not None:
                line += f" <- {safe_text(src)}"  # the source, on the console only (never in a report)
            if o.status in ("ok", "failed") and o.verdict is not None:
                failed = [c.name for c in o.verdict.checks if not c.ok]
                line += f"  verified: {len(o.verdict.checks) - len(failed)}/{len(o.verdict.checks)} checks"
                if o.verdict.findings:
                    line += f", {len(o.verdict.findings)} residual identifier(s)"
                if failed:
                    line += f" (failed: {safe_text(', '.join(failed))})"
            if o.status == "error":
                err_console.print(f"[red]error:[/red] {safe_text(src)}: {safe_text(o.error)}", highlight=False, soft_wrap=True)
            if not json_out:
                err_console.print(line, highlight=False, soft_wrap=True) if o.status != "ok" else out_console.print(line, highlight=False, soft_wrap=True)

    try:
        with progress:
            result = run_job(cfg, on_event=on_event)
    except WsianonError as exc:
        _fail(exc.one_line(), 1 if exc.path else 2)
    except KeyboardInterrupt:
        err_console.print("interrupted: no partial output was placed in OUT")
        raise typer.Exit(130)
    if dry_run:
        print(json.dumps(result.plans, indent=2))
    if json_out and result.report_path:
        print(result.report_path.read_text())
    counts: dict[str, int] = {}
    for o in result.outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    total = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    msg = f"{len(result.outcomes)} slide(s): {total}"
    if result.report_path:
        msg += f"\nreport:  {safe_text(result.report_path)}"
    if out is not None and not dry_run:
        msg += f"\noutputs: {safe_text(out)}"
    if result.mapping_path:
        msg += f"\nmapping (private, keep outside OUT): {safe_text(result.mapping_path)}"
    if any(o.status == "failed" for o in result.outcomes) and result.quarantine_dir:
        msg += f"\nquarantine (failed verification): {safe_text(result.quarantine_dir)}"
    (err_console if json_out else out_console).print(msg, highlight=False, soft_wrap=True)
    raise typer.Exit(result.exit_code)


@app.command()
def inspect(
    inputs: Annotated[list[Path], typer.Argument(help="Slides to inspect.", show_default=False)],
    show_values: Annotated[bool, typer.Option("--show-values", help="Also print the identifying values themselves (careful: sensitive).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    allow_generic: Annotated[bool, typer.Option("--allow-generic", help="Also inspect TIFFs no vendor redactor claims.")] = False,
) -> None:
    """List the identifying content a slide holds: metadata fields, label/macro images. Values are hidden unless --show-values."""
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
        pub = inv.public(show_values)
        pub["path"] = str(s.path)
        results.append(pub)
        if not json_out:
            t = Table(title=f"{safe_text(s.path)} — {safe_text(inv.format)}, {inv.levels} level(s)", show_lines=False)
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
                )
            if not show_values:
                out_console.print("  (values hidden; --show-values prints them)", style="dim")
    if json_out:
        print(json.dumps(results, indent=2))
    raise typer.Exit(code)


@app.command()
def verify(
    paths: Annotated[list[Path], typer.Argument(help="Anonymized outputs (or any slides) to audit.", show_default=False)],
    source: Annotated[Optional[Path], typer.Option("--source", help="The original slide, to compare against (canaries, tiles).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    allow_generic: Annotated[bool, typer.Option("--allow-generic", help="Also audit TIFFs no vendor redactor claims.")] = False,
) -> None:
    """Audit outputs: structure, residual identifying metadata, associated images, canary values. Exit 1 if anything remains."""
    from wsianon.pipeline.audit import audit_paths

    try:
        verdicts = audit_paths(paths, source=source, allow_generic=allow_generic)
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
                out_console.print(f"  [red]residual[/red] {safe_text(f.canary)} ({safe_text(f.encoding)}) in {safe_text(f.file)} at byte {f.offset}", highlight=False, soft_wrap=True)
    if json_out:
        print(json.dumps(report, indent=2))
    raise typer.Exit(code)


@app.command()
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


def main() -> None:
    import os
    import warnings

    # library warnings (pydicom's VR complaints, ...) can quote values from the
    # slide: the report carries what matters, so they stay quiet unless debugging
    if not os.environ.get("WSIANON_DEBUG"):
        warnings.simplefilter("ignore")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
