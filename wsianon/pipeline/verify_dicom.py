"""Verification of DICOM-route outputs, independent of the de-identification engine.

It re-reads every output with pydicom (and the source with pydicom or tifffile), and judges the
result against the resolved Annex E profile (the rule DATA, not the engine's code):

* ``dicom: profile`` — every element of every output, recursively: no private tags, no 50xx/60xx
  groups, X attributes absent, Z attributes empty, no value of a removed/blanked/dummied/cleaned
  source field left in any element, UIDs replaced;
* ``dicom: record`` — PatientIdentityRemoved, DeidentificationMethodCodeSequence (113100),
  LongitudinalTemporalInformationModified, a De-identifying Equipment (DCM 109104) item;
* ``dicom: images`` — no LABEL (unless our blank one), no OVERVIEW unless --macro keep (then flagged);
* ``dicom: barcodes`` — no barcode in a THUMBNAIL; a LABEL (only ours, --label blank) is one uniform
  colour; a kept OVERVIEW is searched and reported;
* ``dicom: thumbnail`` — every THUMBNAIL is the slide's pyramid downsampled (aspect and pixels;
  ``wsianon.verify.thumbnail``);
* ``dicom: uids`` — one Study/Series/FrameOfReference UID for the slide, unique SOP Instance UIDs;
* ``dicom: pyramid`` — every VOLUME instance is a level of the slide's image (its aspect);
* ``dicom: photometric`` — every instance's Photometric Interpretation is one PS3.5 8.2 allows for
  its transfer syntax, with its number of samples (``wsianon.verify.dicom.photometric``);
* ``dicom: frames`` — every frame equals the source frame (DICOM inputs) or the source tile
  bitstream (tiled TIFF sources; JPEG compared by tables and entropy-coded data, since the DICOM
  frame carries the shared JPEGTables and colour-space markers inline); frames the converter
  re-tiled without re-encoding (NDPI) decode to the same Y/Cb/Cr samples as the source region;
  frames the route declares lossy re-encoded (DCM 113040) are as close to the source read by
  OpenSlide as the verifier's own re-encode of it with the route's settings, over the frame and
  in every 16x16 block (``verify.dicom.decode.ReencodeBound``);
* ``dicom: frame padding`` — the padding of every edge frame (beyond the total pixel matrix) is
  uniform, the visible edge replicated or a neighbour frame's copy (``wsianon.verify.padding``);
* ``dicom: dciodvfy`` — no errors (for DICOM inputs: no error the source instance did not have);
* ``dicom: opens`` — wsidicom opens the folder, OpenSlide opens the instances as DICOM.

No identifying value is ever put into a check's detail.

The checks themselves live in the verification layer, ``wsianon/verify/dicom/`` (one module per
concept; they never import a redactor); this module runs them for one slide, with what only the
pipeline knows (the source's inventory, the format's own frame reader, the policy).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydicom.dataset import Dataset

from wsianon.converters.base import Inventory
from wsianon.errors import CorruptInput
from wsianon.io.dicomframes import unreadable_numbers
from wsianon.pipeline.model import Verdict
from wsianon.profiles.actions import Action
from wsianon.profiles.dicom import REGISTRY_ROOT, DicomProfile, profile_for_policy
from wsianon.verify.dicom.common import read_dataset
from wsianon.verify.dicom import frames
from wsianon.verify import ecs, padding, sof
from wsianon.verify import thumbnail as thumbnail_provenance
from wsianon.verify import pyramid_barcodes
from wsianon.verify.dicom.frames import check_frame_segments, check_frames_dicom
from wsianon.verify.dicom.images import check_barcodes, check_record_and_images
from wsianon.verify.dicom.opens import check_opens
from wsianon.verify.dicom.photometric import check_photometric
from wsianon.verify.dicom.pyramid import check_pyramid
from wsianon.verify.dicom.profile import element_values, walk_profile
from wsianon.verify.dicom.uids import check_uids
from wsianon.verify.dicom.validator import check_dciodvfy, Dciodvfy


def _check_closed_world(files: list[Path], profile: DicomProfile | None, verdict: Verdict, dsets=None, names: set[str] | None = None) -> None:
    """``dicom: closed world`` (wsianon.verify.dicom_attrs): every attribute allowlisted, every
    text a dummy/pseudonym/vocabulary value, every reference resolving.  ``names``: the
    pseudonyms an identity attribute may hold besides a keyed pseudonym's shape (the slide's, a
    map's; none: only that shape)."""
    from wsianon.verify.dicom_attrs import check_dicom_attributes

    found, n = check_dicom_attributes(files, profile, pseudonyms=set(names or ()), datasets=[ds for _f, ds in dsets] if dsets else None)
    verdict.add(
        "dicom: closed world",
        not found,
        "; ".join(found[:8]) or f"{n} attributes of {len(files)} instances: all in the VL WSI IOD, text proven dummy/pseudonym/vocabulary",
    )


def _check_frames_converted(inv: Inventory, outputs: list[tuple[Path, Dataset]], verdict: Verdict, **kw) -> None:
    """``dicom: frames`` for a slide converted from another format: the source file, and the
    format's own frame reader for re-encoded levels OpenSlide cannot read (its verification hook's
    ``frame_reference``, e.g. iSyntax through pyisyntax)."""
    from wsianon.pipeline.verify import format_checks

    reference = getattr(format_checks(inv.format), "frame_reference", None)
    frames.check_frames_converted(Path(inv.path), reference, outputs, verdict, **kw)


class _Beside:
    """Checks run one after the other, each into a verdict of its own, merged into the slide's
    verdict by ``join`` in their order: in one thread beside the caller's checks when ``threaded``
    (the frame checks read bytes and decode frames, mostly without the GIL, while the picture checks
    decode and search; measured: the verification's tail ran on one core), else in ``join``. A
    check that raises is re-raised by ``join``, as it would have been in line; leaving the block
    without ``join`` (the caller's check raised, an interrupt) starts no further check, waits for
    the one running and drops the verdicts."""

    def __init__(self, checks: list, threaded: bool):
        import threading

        self.checks = checks
        self.verdicts = [Verdict() for _ in checks]
        self.pool = None
        self.future = None
        self._abandoned = threading.Event()
        if threaded:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsianon-frames")
            self.future = self.pool.submit(self._run)

    def _run(self) -> None:
        for check, v in zip(self.checks, self.verdicts):
            if self._abandoned.is_set():
                return
            check(v)

    def __enter__(self) -> "_Beside":
        return self

    def join(self, verdict: Verdict) -> None:
        if self.future is None:
            self._run()
        else:
            self.future.result()
        for v in self.verdicts:
            verdict.extend(v)

    def __exit__(self, *exc) -> None:
        self._abandoned.set()  # after join: nothing left to start
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def verify_dicom_output(inv: Inventory, result_files: list[Path], ctx, verdict: Verdict, source_frames=None, frame_segments=None) -> None:
    """Add the DICOM checks for one slide's outputs to ``verdict`` (see module doc).
    ``frame_segments``: a ``FrameSegments`` the caller feeds from its read-back of the outputs
    and judges afterwards (``frame_segments.check(verdict)``); None: judged here, reading them."""
    files = [Path(f) for f in result_files]
    if not files:
        verdict.add("dicom: outputs", False, "no instance written")
        return
    policy = getattr(ctx, "policy", None)
    profile = profile_for_policy(policy) if policy is not None else DicomProfile()
    dsets = []
    for f in files:
        try:
            dsets.append((f, read_dataset(f)))
        except Exception as exc:
            verdict.add("dicom: readable", False, f"{f.name}: {type(exc).__name__}")
            return
    verdict.add("dicom: readable", True, f"{len(files)} instances")
    started = {f: Dciodvfy(f) for f in files} if shutil.which("dciodvfy") else None
    source_values = {f.value.strip() for f in inv.fields if f.action is not Action.KEEP and f.value and f.value.strip()}
    source_uids: set[str] = set()
    if inv.format == "dicom":
        for s in inv.input_files:
            try:
                for e in read_dataset(Path(s)).iterall():
                    if e.VR == "UI":
                        source_uids.update(v for v in element_values(e) if not v.startswith(REGISTRY_ROOT))
            except Exception:
                continue
    problems: list[str] = []
    n = 0
    for _f, ds in dsets:
        n += walk_profile(ds, profile, source_values, source_uids, problems)
        for kw in ("SourceApplicationEntityTitle", "PrivateInformation"):
            if kw in ds.file_meta:
                problems.append(f"file meta {kw}")
    verdict.add("dicom: profile", not problems, "; ".join(sorted(set(problems))[:8]) or f"{n} elements conform to the resolved profile")
    fragments = frame_segments.fragments if frame_segments is not None else None
    sources = [Path(s) for s in inv.input_files] if inv.format == "dicom" else None
    # the frame checks, each judged apart: in a thread beside the picture checks where the caller's
    # item walk located the frames (``frame_segments``), else here after them, in the same order
    frame_checks = [
        (lambda v: check_frames_dicom(sources, dsets, v)) if sources is not None else (lambda v: _check_frames_converted(inv, dsets, v, fragments=fragments)),
        *([] if frame_segments is not None else [lambda v: check_frame_segments(files, v)]),
        # no bytes hidden after coded units (a sample of each instance's frames unless --coded-data all)
        lambda v: ecs.check_dicom(
            dsets, v, bool(getattr(policy, "accept_unrun_checks", False)), getattr(policy, "coded_data", "sample") == "all", fragments=fragments
        ),
        # the edge frames' padding (pixels beyond the total pixel matrix) holds nothing new
        lambda v: padding.check_dicom(dsets, v, fragments=fragments),
        # every frame codes exactly Rows x Columns: no pixels beyond the frame
        lambda v: sof.check_dicom(dsets, v, fragments=fragments),
    ]
    with _Beside(frame_checks, frame_segments is not None) as beside:
        _check_closed_world(files, profile, verdict, dsets, set(ctx.names()))
        from wsianon.verify import dicom_text  # every remaining text value is vocabulary (issue 8, 4b)

        # the slide's pseudonyms, and the Retain options of the run's own policy (never the output's claims)
        dicom_text.add_check(verdict, files, [ds for _f, ds in dsets], set(ctx.names()), profile)
        check_record_and_images(dsets, policy, verdict)
        check_barcodes(dsets, policy, verdict)
        thumbnail_provenance.check_dicom(dsets, verdict)
        pyramid_barcodes.check_dicom(dsets, verdict)
        check_uids(dsets, verdict, sources)
        check_pyramid(dsets, verdict)
        check_photometric(dsets, verdict)
        beside.join(verdict)
    check_dciodvfy(files, sources, verdict, started, bool(getattr(policy, "accept_unrun_checks", False)))
    check_opens(files, verdict, sources, policy)


def audit_dicom(
    inv: Inventory,
    files: list[Path],
    verdict: Verdict,
    pseudonyms: set[str] | None = None,
    every_frame: bool = False,
    profile: DicomProfile | None = None,
    sources: list[Path] | None = None,
) -> None:
    """Check already-anonymized DICOM files (``wsianon verify``): no source to compare with.
    ``pseudonyms``: a pseudonym map's names, accepted in the identity attributes. ``profile``:
    the options the outputs were made with, as the user says (``verify --profile/--dates``, as
    given to ``run``); None: the default options. What an output records of its options
    (DeidentificationMethodCodeSequence) widens nothing: a Retain option it claims and ``profile``
    lacks is a finding (red team stop 39).  ``sources``: the instances of the DICOM slide the outputs
    were made from (``verify --source``): judged against them as ``run`` judges its outputs (the
    UIDs replaced; dciodvfy and the viewers held to no error the source did not have), else alone."""
    from wsianon.io.dicomframes import walks_remembered

    with walks_remembered():  # one walk of each instance's items for every check that locates frames
        _audit_dicom(inv, files, verdict, pseudonyms, every_frame, profile or DicomProfile(), sources or None)


def _audit_dicom(
    inv: Inventory, files: list[Path], verdict: Verdict, pseudonyms: set[str] | None, every_frame: bool, profile: DicomProfile, sources: list[Path] | None
) -> None:
    from wsianon.profiles.policy import Policy

    files = [Path(f) for f in files]
    dsets = [(f, read_dataset(f)) for f in files]
    for f, ds in dsets:
        if (kw := unreadable_numbers(ds)) is not None:  # every check reads them as numbers
            raise CorruptInput(f, f"{kw} is not a number; not judged")
    problems: list[str] = []
    for _f, ds in dsets:  # judged against the options given (e.g. verify --profile retain-device-identity)
        walk_profile(ds, profile, set(), set(), problems)
    # without the source, dates/dummies cannot be judged; private tags, X and Z can
    verdict.add("dicom: profile", not problems, "; ".join(sorted(set(problems))[:8]) or "conforms to the Basic Profile")
    _check_closed_world(files, profile, verdict, dsets, pseudonyms)
    from wsianon.verify import dicom_text  # every remaining text value is vocabulary (issue 8, 4b)

    dicom_text.add_check(verdict, files, [ds for _f, ds in dsets], pseudonyms, profile)
    # a LABEL instance is accepted as the blank stand-in run --label blank writes only where it is
    # one: flagged BurnedInAnnotation NO ("dicom: images") and one uniform colour ("dicom: barcodes")
    blank = Policy(label="blank")
    frame_checks = [
        lambda v: check_frame_segments(files, v),
        lambda v: ecs.check_dicom(dsets, v, every=every_frame),
        lambda v: padding.check_dicom(dsets, v),
        lambda v: sof.check_dicom(dsets, v),
    ]
    # the frame checks beside the picture checks, as the run's verification judges them
    with _Beside(frame_checks, True) as beside:
        check_record_and_images(dsets, blank, verdict)
        check_barcodes(dsets, blank, verdict)
        thumbnail_provenance.check_dicom(dsets, verdict)
        pyramid_barcodes.check_dicom(dsets, verdict)
        check_uids(dsets, verdict, sources)
        check_pyramid(dsets, verdict)
        check_photometric(dsets, verdict)
        beside.join(verdict)
    check_dciodvfy(files, sources, verdict)
    check_opens(files, verdict, sources, blank)
