"""``wsianon verify``: audit any output (ours or another tool's), with or without its source.

Without a source, the audit asks: does the file still carry identifying
metadata fields with values, identifying associated images (label, macro), or
barcodes in the images that remain, and is every printable text outside pixel
data the format's own vocabulary (wsianon.verify.vocabulary)?  With ``--source``, it also scans every
output byte for the source's canary values and compares the pyramid tiles.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

from wsianon.errors import WsianonError
from wsianon.io.quiet import debug_traceback
from wsianon.pipeline.inspect import inspect_source
from wsianon.pipeline.detect import expand_inputs
from wsianon.pipeline.model import Verdict
from wsianon.pipeline.preflight import check_decodes_dicom, preflight
from wsianon.pipeline.verify import (
    SourceSnapshot,
    _format_handles_tiles,
    check_closed_world,
    check_openslide,
    check_thumbnail,
    check_tiles_tiff,
    format_checks,
    own_numbers,
    run_format_checks,
    scan_outputs,
    snapshot_source,
    source_property_canaries,
    stem_canaries,
    uniform,
)
from wsianon.profiles.actions import Action
from wsianon.profiles.policy import Policy
from wsianon.verify import canaries as independent_canaries
from wsianon.verify import fileattrs, filenames, keyedtokens, vocabulary
from wsianon.verify.reportnames import safe_name


def _blank_label(inv, path: Path) -> bool:
    """The output's one label image is uniform — every band of it one value as OpenSlide decodes
    it, or by the rule of the format's own hook where OpenSlide does not read the format (its
    ``blank_label``: iSyntax) —, as the stand-in ``run --label blank`` writes: nothing in it was
    chosen, so ``verify`` (which knows no policy) accepts it as ``run`` does under that policy. Two
    label images, or one OpenSlide does not show, are judged as before (refused)."""
    if sum(1 for i in inv.images if i.kind == "label") != 1:
        return False
    own = getattr(format_checks(inv.format), "blank_label", None)
    if own is not None:  # a format OpenSlide does not read judges its label itself (iSyntax)
        return bool(own(path))
    try:
        import openslide

        with openslide.OpenSlide(str(path)) as o:
            img = o.associated_images.get("label") if "label" in o.associated_images else None
            return img is not None and uniform(img)
    except Exception:
        return False


def _residual_fields(inv, verdict: Verdict, names=(), blank_label: bool = False) -> None:
    # a value that is the format's vocabulary or structural (a number, a keyed UID,
    # one of our pseudonyms, a name of the pseudonym map) is not an identifier: the vocabulary
    # scan judges all text
    vocab = vocabulary.vocabulary(inv.format).with_names(names)
    residual = sorted({safe_name(f.name) for f in inv.fields if f.value.strip() and f.action is not Action.KEEP and vocabulary.unknown_tokens(f.value, vocab)})
    verdict.add(
        "residual-metadata",
        not residual,
        f"identifying fields still carrying values: {residual}" if residual else "no identifying field carries a value",
    )
    # an image the format replaces by a neutral one (the MRXS preview) is judged by the format's checks
    imgs = sorted({i.kind for i in inv.images if i.identifying and i.action is not Action.REPLACE and not (blank_label and i.kind == "label")})
    verdict.add("residual-images", not imgs, f"identifying images still present: {imgs}" if imgs else "no label/macro image present")


def audit_paths(
    paths: list[Path],
    source: Path | None = None,
    allow_generic: bool = False,
    pseudonyms: set[str] | None = None,
    coded_data: str = "sample",
    dicom_profile=None,
    rename_keep: bool = False,
):
    """A verdict (or a one-line error) for each slide among ``paths``.  ``pseudonyms``: names a
    pseudonym map chose (``run --pseudonyms``), accepted where an output names its slide or
    patient, as ``run``'s own verification accepts them; keyed pseudonyms need no map.
    ``coded_data``: "all" judges every tile's/frame's coded data, "sample" a sample (--coded-data).
    ``dicom_profile``: the DICOM options the outputs were made with (``verify --profile/--dates``,
    as given to ``run``; None: the default options), never what an output records of them.
    ``rename_keep``: the outputs were made with ``run --rename keep`` (``verify --rename keep``):
    a native slide's own file name (and an MRXS slide's folder) is the source's by request, not
    judged; every other name is (:mod:`wsianon.verify.filenames`)."""
    policy = Policy(coded_data=coded_data)
    src_inv = None
    src_snap: SourceSnapshot | None = None
    if source is not None:
        srcs = expand_inputs([source], allow_generic)
        if len(srcs) != 1 or srcs[0].error is not None:
            err = srcs[0].error if srcs and srcs[0].error else WsianonError(source, "source is not a single readable slide")
            raise err
        src_inv = inspect_source(srcs[0], policy)
        if not srcs[0].spec.is_dicom:
            src_snap = snapshot_source(src_inv)
    results: list[tuple[Path, Verdict | None, WsianonError | None]] = []
    covered: set[Path] = set()  # the files of the slides found (and of those that could not be read)
    roots = [Path(p) for p in paths if Path(p).is_dir()]
    for s in expand_inputs(paths, allow_generic):
        covered.update(Path(f).resolve() for f in [s.path, *(s.files or ())])
        if s.error is not None:
            results.append((s.path, None, s.error))
            continue
        try:
            # OpenSlide, libtiff and glib can abort the process on a hostile file (glib when a
            # byte count asks for a terabyte, or a DICOM tile's size for more memory than there
            # is): probe in a child first, as `run` does, so such a file is one slide's error and
            # the other slides still get their verdicts
            if not s.spec.is_dicom:
                preflight(s.path)
            else:
                check_decodes_dicom(list(s.files or [s.path]))
            inv = inspect_source(s, policy)
            verdict = Verdict()
            if s.spec.is_dicom:
                from wsianon.pipeline.verify_dicom import audit_dicom

                dicom_sources = [Path(f) for f in src_inv.input_files] if src_inv is not None and srcs[0].spec.is_dicom else None
                audit_dicom(inv, s.files, verdict, pseudonyms, every_frame=coded_data == "all", profile=dicom_profile, sources=dicom_sources)
            else:
                snap = src_snap or snapshot_source(inv, tiles=False)
                blank = _blank_label(inv, s.path)
                slide_policy = replace(policy, label="blank") if blank else policy  # judged as run --label blank is
                props = check_openslide(snap, s.converter, s.path, slide_policy, verdict)
                _residual_fields(inv, verdict, pseudonyms, blank)
                # the format's own proof against the source where there is one of its format (as
                # ``run`` judges it, with the source's snapshot); else the output stands in for its
                # source: consistency only (another format's snapshot is nothing this hook reads)
                hook_inv = src_inv if src_inv is not None and src_inv.format == inv.format else inv
                same_format = hook_inv is not inv
                run_format_checks(inv.format, hook_inv, s.path, s.files, slide_policy, verdict, src_snap if same_format else None)
                check_closed_world(
                    inv.format, s.path, verdict, accept_unrun=policy.accept_unrun_checks, every_tile=coded_data == "all"
                )  # judged from the file alone
                # every printable run outside pixel data must be the format's vocabulary
                vocabulary.add_check(verdict, inv.format, s.path, inv.input_files or s.files, root=s.path.parent, tiles="walk", names=pseudonyms or ())
                check_thumbnail(s.converter, s.path, slide_policy, verdict)
                if src_inv is not None and src_snap is not None:
                    read = src_inv.canaries() + stem_canaries(src_inv.path) + source_property_canaries(src_snap, props)
                    # with the verifier's own reading of the source, as ``run`` scans for them
                    canaries = independent_canaries.union(read, src_snap.harvested or [], src_inv.format)
                    tokens = keyedtokens.of_output(s.path, s.files, format_checks(inv.format))
                    scan_outputs(
                        canaries,
                        s.files,
                        verdict,
                        numbers=(src_inv.path, own_numbers(inv.format, props)),
                        tokens=tokens,
                        foreign=partial(keyedtokens.of_inventory, src_inv, canaries),
                    )
                    if not same_format:  # no pyramid comparison holds across formats
                        verdict.add(
                            "tiles-identical",
                            False,
                            f"the source's format ({src_inv.format}) is not the output's ({inv.format}): the pyramids cannot be compared",
                        )
                    elif src_snap.format_state is None and not _format_handles_tiles(inv.format):
                        check_tiles_tiff(src_snap, inv.format, s.path, verdict)  # (else the format's hook compared them above)
            if src_inv is not None and s.spec.is_dicom:
                # the list ``run`` scans a DICOM output for (the values as read and as the verifier
                # reads them itself; vocabulary and the standard's own words dropped)
                if srcs[0].spec.is_dicom:
                    # as ``run``'s conversion aligns the source's inventory with the profile: a field
                    # the options keep is no value that must vanish (fuzz seed 170 #70: a bit flip
                    # moved a kept code into an unnamed sequence, and only the audit counted it)
                    from wsianon.converters.dicom.series import align_inventory
                    from wsianon.profiles.dicom import DicomProfile

                    align_inventory(src_inv, dicom_profile or DicomProfile())
                read = src_inv.canaries() + stem_canaries(src_inv.path)
                independent = independent_canaries.independent_for_dicom(
                    src_inv.path,
                    src_inv.format,
                    src_inv.input_files,
                    list(s.files),
                    srcs[0].spec.is_dicom,
                    src_snap.harvested if src_snap is not None else None,
                )
                searched = independent_canaries.for_dicom_outputs(read, independent, src_inv.format, list(s.files))
                scan_outputs(
                    searched,
                    s.files,
                    verdict,
                    tokens=keyedtokens.from_dicom(list(s.files)),
                    foreign=partial(keyedtokens.of_inventory, src_inv, searched, srcs[0].spec.is_dicom),
                )
                if not srcs[0].spec.is_dicom:  # converted from another format: every frame proven against it
                    from wsianon.pipeline.verify_dicom import _check_frames_converted
                    from wsianon.verify.dicom.common import read_dataset

                    _check_frames_converted(src_inv, [(Path(f), read_dataset(Path(f))) for f in s.files], verdict)
            fileattrs.add_check(verdict, [s.path, *s.files, *(inv.input_files or ())])  # what the files carry outside their bytes
            _names_check(verdict, inv.format, s, [s.path, *s.files, *(inv.input_files or ())], roots, pseudonyms, rename_keep)
            results.append((s.path, verdict, None))
            covered.update(Path(f).resolve() for f in inv.input_files or ())
        except WsianonError as exc:
            results.append((s.path, None, exc))
        except Exception as exc:  # a bug: this slide is not judged clean; its message (it can quote the slide) is not kept
            debug_traceback(exc)
            results.append((s.path, None, WsianonError(s.path, f"internal error ({type(exc).__name__}) while auditing; not judged clean")))
    for stray, detail in _stray_files(roots, covered):  # (NOT CLEAN whatever its name)
        verdict = Verdict()
        verdict.add(STRAY_CHECK, False, detail)
        results.append((stray, verdict, None))
    return results


STRAY_CHECK = "closed-world: files"
STRAY_DETAIL = "a file that is neither part of a slide nor a record file wsianon writes: it was not judged (audit it on its own, or remove it)"
STRAY_FOLDER = "a folder that holds no audited slide (empty, or only files no slide check judges): its name is shared with it (remove it)"
STRAY_LINK = "a symbolic link to a folder: not followed, its files were not judged (audit the folder itself, or remove the link)"
STRAY_OTHER = "a FIFO, socket or device: not a file, never read (remove it)"


def _below(path: Path, root: Path) -> bool:
    import os

    return Path(os.path.abspath(root)) in Path(os.path.abspath(path)).parents


def _names_check(verdict: Verdict, fmt: str, s, files: list[Path], roots: list[Path], pseudonyms, rename_keep: bool) -> None:
    """The names the slide is shared under: its files', the folders between the folder given to
    ``verify`` and them, and the targets of links among them (:mod:`wsianon.verify.filenames`)."""
    accepted: set[str] = set()
    if rename_keep and not s.spec.is_dicom:  # the source's name, kept on request (DICOM outputs keep pseudonyms)
        accepted = {s.path.name, s.path.stem} if s.path.suffix.lower() == ".mrxs" else {s.path.name}
    judge = filenames.NameJudge(vocabulary.vocabulary(fmt).with_names(pseudonyms or ()), frozenset(accepted))
    for f in dict.fromkeys(Path(f) for f in files):
        root = next((r for r in roots if _below(f, r)), None)
        judge.path(f, root if root is not None else s.path.parent)
    judge.add_check(verdict)


def _stray_files(folders: list[Path], covered: set[Path]) -> list[tuple[Path, str]]:
    """The entries below ``folders`` that are part of no audited slide and are not the record's
    own files (directly in a given folder), with what they are: closed world for a folder, since
    the slide checks judge only the files that belong to a slide (a ``notes.txt`` beside them is
    no slide).  Files, FIFOs and the like, links to folders (never followed) and folders that hold
    no audited slide or record file (an empty folder named after the patient: red team 17)."""
    import os
    import stat

    from wsianon.pipeline.record import record_file_names, record_file_problems

    out: list[tuple[Path, str]] = []
    for folder in folders:
        top = folder.resolve()
        # the record's files are ours only while they are what wsianon wrote (the certificate
        # vouches for the reports and the card pages, its PDF is its rendering): any other is judged by nothing
        names = set(record_file_names(top))
        forged = record_file_problems(top) if names else {}
        holding: set[Path] = set()  # folders that hold an audited slide's file or a record file
        folders_seen: list[Path] = []
        for root, dirs, files in os.walk(top):
            dirs.sort()
            rootp = Path(root)
            for d in list(dirs):
                p = rootp / d
                if p.is_symlink():
                    out.append((p, STRAY_LINK))  # (os.walk does not enter it)
                else:
                    folders_seen.append(p)
            for f in sorted(files):
                p = rootp / f
                rel = p.relative_to(top).as_posix()
                if p.resolve() in covered or (rel in names and rel not in forged):  # (resolved: a slide reached through a link)
                    holding.update(p.parents)
                    continue
                try:
                    regular = stat.S_ISREG(os.stat(p).st_mode)
                except OSError:
                    regular = True  # a broken link: a file no check read
                out.append((p, STRAY_DETAIL if regular else STRAY_OTHER))
        out += [(p, STRAY_FOLDER) for p in folders_seen if p not in holding]
    return out
