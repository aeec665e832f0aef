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
    err_console.print(f"[red]error:[/red] {msg}", highlight=False, soft_wrap=True)
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
    dicomweb: Annotated[Optional[str], typer.Option("--dicomweb", help="Send each slide that verified clean to this DICOMweb (STOW-RS) base URL.", rich_help_panel="Delivery")] = None,
    dimse: Annotated[Optional[str], typer.Option("--dimse", help="Send each slide that verified clean by C-STORE to HOST:PORT.", rich_help_panel="Delivery")] = None,
    aet: Annotated[Optional[str], typer.Option("--aet", help="Our AE title for --dimse.", rich_help_panel="Delivery")] = None,
    aec: Annotated[Optional[str], typer.Option("--aec", help="The store's AE title for --dimse.", rich_help_panel="Delivery")] = None,
    ca_bundle: Annotated[Optional[Path], typer.Option("--ca-bundle", help="CA certificates (PEM) that sign the DICOMweb server's certificate.", rich_help_panel="Delivery")] = None,
    client_cert: Annotated[Optional[Path], typer.Option("--client-cert", help="Client certificate (PEM) for DICOMweb mutual TLS.", rich_help_panel="Delivery")] = None,
    client_key: Annotated[Optional[Path], typer.Option("--client-key", help="Private key of --client-cert.", rich_help_panel="Delivery")] = None,
    delivery_config: Annotated[Optional[Path], typer.Option("--delivery-config", help="TOML file (mode 0600) with DICOMweb credentials. Default: $WSIANON_DELIVERY_CONFIG or ~/.config/wsianon/delivery.toml.", rich_help_panel="Delivery")] = None,
    max_instance_size: Annotated[Optional[str], typer.Option("--max-instance-size", help="Upload limit of the store (e.g. 500M): STOW-RS requests are split to fit, a larger instance is refused.", rich_help_panel="Delivery")] = None,
) -> None:
    """Anonymize slides and verify the outputs. Exit 0: all clean; 1: some slide failed; 2: usage error."""
    from wsianon.pipeline.jobs import JobConfig, run_job
    from wsianon.profiles.policy import Policy

    if out is None and not (in_place or dry_run):
        _fail("an output folder is required: -o OUT (or --in-place / --dry-run)")
    if in_place and target is Target.dicom:
        _fail("--in-place works with --target native only")
    deliverer = None
    if dicomweb or dimse:
        if target is not Target.dicom or dry_run or out is None:
            _fail("--dicomweb/--dimse deliver DICOM outputs: use them with --target dicom and -o OUT")
        from wsianon.pipeline.deliver import Deliverer

        dest = _destination(dicomweb, dimse, aet, aec, ca_bundle, client_cert, client_key, delivery_config, max_instance_size)
        try:
            deliverer = Deliverer(out, dest)
        except WsianonError as exc:
            _fail(exc.one_line())
    deliveries: list = []
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
            task_ids["cur"] = progress.add_task(f"{info['label']}", total=max(info.get("size", 0), 1) * 2)
        elif kind == "bytes" and "cur" in task_ids:
            progress.advance(task_ids["cur"], info["n"])
        elif kind == "slide":
            if "cur" in task_ids:
                progress.remove_task(task_ids.pop("cur"))
            o = info["outcome"]
            src = info.get("source")
            style = _status_style(o.status)
            line = f"[{style}]{o.status.upper():8}[/{style}] {o.input_label}"
            if o.format:
                line += f" ({o.format})"
            if o.outputs:
                line += f" -> {', '.join(o.outputs)}"
            if o.status in ("ok", "failed") and o.verdict is not None:
                failed = [c.name for c in o.verdict.checks if not c.ok]
                line += f"  verified: {len(o.verdict.checks) - len(failed)}/{len(o.verdict.checks)} checks"
                if o.verdict.findings:
                    line += f", {len(o.verdict.findings)} residual identifier(s)"
                if failed:
                    line += f" (failed: {', '.join(failed)})"
            if o.status == "error":
                err_console.print(f"[red]error:[/red] {src}: {o.error}", highlight=False, soft_wrap=True)
            if not json_out:
                err_console.print(line, highlight=False, soft_wrap=True) if o.status != "ok" else out_console.print(line, highlight=False, soft_wrap=True)
            if deliverer is not None and o.status == "ok" and o.verdict is not None and o.verdict.ok:
                deliveries.append(_print_delivery(deliverer.deliver_slide(o.input_label, o.outputs), quiet_stdout=json_out))

    try:
        with progress:
            result = run_job(cfg, on_event=on_event)
    except WsianonError as exc:
        _fail(exc.one_line(), 1 if exc.path else 2)
    except KeyboardInterrupt:
        err_console.print("interrupted: no partial output was placed in OUT")
        raise typer.Exit(130)
    finally:
        if deliverer is not None:
            deliverer.close()
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
        msg += f"\nreport:  {result.report_path}"
    if out is not None and not dry_run:
        msg += f"\noutputs: {out}"
    if result.mapping_path:
        msg += f"\nmapping (private, keep outside OUT): {result.mapping_path}"
    if any(o.status == "failed" for o in result.outcomes) and result.quarantine_dir:
        msg += f"\nquarantine (failed verification): {result.quarantine_dir}"
    if deliverer is not None:
        undelivered = sum(1 for d in deliveries if not d.ok)
        msg += f"\ndelivered to {deliverer.dest.key}: {len(deliveries) - undelivered} slide(s) complete"
        if undelivered:
            msg += f", {undelivered} incomplete (resume with: wsianon push {out} ...)"
    (err_console if json_out else out_console).print(msg, highlight=False, soft_wrap=True)
    raise typer.Exit(max(result.exit_code, 1 if any(not d.ok for d in deliveries) else 0))


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


@app.command()
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
            err_console.print(f"[red]error:[/red] {s.error.one_line()}", highlight=False, soft_wrap=True)
            code = 1
            continue
        try:
            inv = inspect_source(s, Policy())
        except WsianonError as exc:
            err_console.print(f"[red]error:[/red] {exc.one_line()}", highlight=False, soft_wrap=True)
            code = 1
            continue
        pub = inv.public(show_values)
        pub["path"] = str(s.path)
        results.append(pub)
        if not json_out:
            t = Table(title=f"{s.path} — {inv.format}, {inv.levels} level(s)", show_lines=False)
            t.add_column("field")
            t.add_column("where")
            t.add_column("action")
            if show_values:
                t.add_column("value")
            for f in pub["fields"]:
                row = [f["name"], f["where"], f["action"]]
                if show_values:
                    row.append(f.get("value", ""))
                t.add_row(*row)
            out_console.print(t)
            for img in pub["associated_images"]:
                out_console.print(
                    f"  image {img['kind']:10} {img['where']:12} identifying={img['identifying']} -> {img['action']}",
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
            err_console.print(f"[red]error:[/red] {err.one_line()}", highlight=False, soft_wrap=True)
            code = 1
            continue
        report.append({"path": str(path), **verdict.as_dict()})
        if not verdict.ok:
            code = 1
        if not json_out:
            style = "green" if verdict.ok else "red"
            out_console.print(f"[{style}]{'CLEAN' if verdict.ok else 'NOT CLEAN'}[/{style}] {path}", highlight=False)
            for c in verdict.checks:
                mark = "[green]ok[/green]  " if c.ok else "[red]FAIL[/red]"
                out_console.print(f"  {mark} {c.name}: {c.detail}", highlight=False, soft_wrap=True)
            for f in verdict.findings:
                out_console.print(f"  [red]residual[/red] {f.canary} ({f.encoding}) in {f.file} at byte {f.offset}", highlight=False)
    if json_out:
        print(json.dumps(report, indent=2))
    raise typer.Exit(code)


@app.command()
def rollback(
    paths: Annotated[list[Path], typer.Argument(help="Files an interrupted --in-place run left a journal for.", show_default=False)],
) -> None:
    """Restore files from the journal an interrupted --in-place run left behind."""
    from wsianon.io.plan import rollback_journal

    code = 0
    for p in paths:
        try:
            if rollback_journal(p):
                out_console.print(f"restored {p}")
            else:
                err_console.print(f"{p}: no journal found")
                code = 1
        except OSError as exc:
            err_console.print(f"[red]error:[/red] {p}: {exc.strerror or exc}")
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
