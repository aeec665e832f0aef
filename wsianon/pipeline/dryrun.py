"""``run --dry-run``: the refusals of the real run, without writing anything.

A dry run goes through detection (done by ``expand_inputs``), inspection, and
then the refusal rules of the route the real run would take, so that DRY-RUN is
only said for a slide the real run would attempt:

* native copy: OpenSlide must decode the source's image data
  (``preflight_source``), the redactor must produce a plan, and the output names
  must not already exist in OUT (unless ``--overwrite``);
* native in-place: additionally single-file formats only, no symbolic or hard
  links, the pseudonymous name must not already exist beside the input;
* DICOM target: overlapping BIF tiles are refused and wsidicomizer must be able
  to open the slide (pixel spacing, a reader for the format);
* DICOM inputs: every instance must be a VL WSI instance whose ImageType says
  whether it shows the label, with Pixel Data.
"""

from __future__ import annotations

from pathlib import Path

from wsianon.converters.base import Inventory, SlideContext
from wsianon.errors import OutputError, UnsupportedFormat, WsianonError
from wsianon.pipeline import anonymize as anon
from wsianon.pipeline.detect import SlideSource
from wsianon.verify.reportnames import safe_removal


def _exists(p: Path) -> bool:
    return p.exists() or p.is_symlink()


def check_native(src: SlideSource, inv: Inventory, ctx: SlideContext, out: Path | None) -> dict:
    """Refuse as the real native run would; returns the plan's description."""
    anon.preflight_source(inv)
    plan = anon.make_plan(src, inv, ctx)
    if ctx.policy.in_place:
        assert src.converter is not None, "a native source has its converter"
        if len(plan.files) != 1 or plan.files[0].source is None or plan.files[0].content is not None:
            raise WsianonError(src.path, f"in-place mode supports single-file formats only ({src.converter.title} is not)")
        fp = plan.files[0]
        final = src.path.with_name(fp.dest) if ctx.policy.rename == "pseudonym" else src.path
        anon.check_in_place_target(src.path, final, ctx.policy.overwrite)
        jp = anon.journal_path(src.path)
        if _exists(jp):
            raise OutputError(src.path, "an unfinished in-place run left its journal (.wsianon-journal) beside the file; run 'wsianon rollback' first")
    elif out is not None and not ctx.policy.overwrite:
        for top in sorted({f.dest.split("/")[0] for f in plan.files}):
            if _exists(out / top):
                raise OutputError(out / top, "output already exists (use --overwrite to replace it)")
    d = plan.describe()
    d["removals"] = [safe_removal(r) for r in d["removals"]]  # names: vocabulary only
    return d


def check_dicom(src: SlideSource, inv: Inventory, ctx: SlideContext, out: Path | None) -> None:
    """Refuse as the real DICOM route would, without converting."""
    if ctx.policy.in_place:
        raise WsianonError(src.path, "in-place mode is for the native target only")
    if out is not None and not ctx.policy.overwrite and _exists(out / ctx.pseudonym):
        raise OutputError(out / ctx.pseudonym, "output already exists (use --overwrite to replace it)")
    if src.spec.is_dicom:
        from wsianon.converters.dicom.series import WSI_SOP_CLASS, _image_kind, read_header

        for f in src.files:
            ds, span = read_header(f)
            if str(ds.get("SOPClassUID", "")) != WSI_SOP_CLASS:
                raise UnsupportedFormat(f, "not a VL Whole Slide Microscopy Image instance (other SOP classes are refused)")
            if _image_kind(ds) is None:
                raise UnsupportedFormat(
                    f,
                    "non-conformant WSI instance: ImageType value 3 (VOLUME/LABEL/OVERVIEW/THUMBNAIL) missing, so it cannot be told whether it shows the slide label; refused",
                )
            if span is None:
                raise UnsupportedFormat(f, "WSI instance without Pixel Data")
        return
    import warnings

    from wsianon.converters.dicom.bridge import _reason, refuse_route

    refuse_route(src.path, inv)
    from wsidicomizer import WsiDicomizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            wsi = WsiDicomizer.open(src.path, include_confidential=False)
        except Exception as exc:
            raise UnsupportedFormat(src.path, _reason(exc)) from None
        try:
            wsi.close()
        except Exception:
            pass
