"""3DHistech MRXS native redactor.

A slide is ``NAME.mrxs`` (a JPEG photo of the whole glass slide, label end
included) plus the folder ``NAME/`` with ``Slidedat.ini``, ``Index.dat`` and
``DataNNNN.dat`` (DESIGN.md §3; layout facts from OpenSlide's mirax reader).

The output is a complete renamed pair: ``PSEUDO.mrxs`` (a neutral preview
without metadata) and ``PSEUDO/`` with

* ``Slidedat.ini`` rewritten fail-closed (encoding, BOM, line endings and key
  order kept; SLIDE_ID replaced by a keyed value, SLIDE_NAME by the pseudonym,
  identifying and unknown free-text values blanked, the label / macro /
  whole-slide records removed and the remaining NONHIER values renumbered);
* ``Index.dat`` patched: the new SLIDE_ID in the header, the removed records
  dropped from the nonhier pointer table and their page entries zeroed, every
  NONHIER page in its one form (one item or none, next-page pointer and reserved
  values zero) and the pages of non-zoom HIER records emptied;
* the Data files patched: every header written as the output Index.dat's own
  (its version and the keyed SLIDE_ID, whatever the source held there), the
  removed blobs and every free-text blob (ProfileXML, XML headers, unknown
  records) zeroed.  Pyramid tile bytes are never touched.

Decided once: ``analyze`` loads the slide and decides every ini value, free-text
line, associated image, free-text record and the preview without the key
(:class:`MrxsAnalysis`; ``inspect`` is a view of it); ``plan`` carries the
decisions out on a copy of Slidedat.ini and as patches, with the keyed
SLIDE_ID, and decides nothing.

Data-file and index names are never followed out of the slide folder.  The
pieces: ``slide.py`` (opening and checking), ``ini.py``, ``index.py``,
``datafile.py``, ``images.py`` (associated images) and ``rules.py`` (the profile).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

from wsianon.converters.base import AssociatedImage, Field, Inventory, NativeConverter, SlideContext
from wsianon.converters.decisions import Decisions
from wsianon.converters.mrxs import index as idx
from wsianon.converters.mrxs.datafile import header_patches, xml_texts
from wsianon.converters.mrxs.images import associated_actions, label_blanks, remove_records
from wsianon.converters.mrxs.index import NonHierRecord
from wsianon.converters.mrxs.ini import IniDoc
from wsianon.converters.mrxs.positions import undrawn_spans
from wsianon.converters.mrxs.rules import ini_value_action, rules, text_records
from wsianon.converters.mrxs.slide import Slide, load_slide
from wsianon.errors import CorruptInput, WsianonError
from wsianon.io.jpeg_images import blank_size_ok, jpeg_text_segments, neutral_jpeg
from wsianon.io.plan import FilePlan, Patch, Plan
from wsianon.io.safefile import read_regular
from wsianon.io.keyed import same_length_hex
from wsianon.io.safetext import os_reason
from wsianon.profiles.names import public as public_name
from wsianon.profiles.actions import Action
from wsianon.profiles.policy import Policy

_DEFAULT_PREVIEW_SIZE = (640, 240)


def keyed_slide_id(key: bytes, old: str) -> str:
    """A new SLIDE_ID of the same length (offsets in Index.dat depend on it), keyed, uppercase hex."""
    return same_length_hex(key, "mrxs-slide-id", old)


@dataclass
class IniValueDecision:
    """One Slidedat.ini value and what happens to it (``ini_value_action``, decided once)."""

    line: int  # index in the slide's ``ini.lines`` (the plan changes its own copy of them)
    action: Action  # keep | blank | dummy (SLIDE_NAME: the output name) | year | replace (SLIDE_ID: keyed)
    new: str  # the new value of a blanked or year-reduced value


# the run report's words for two ini actions were never the action's own word (``Action.done``); kept as they are


@dataclass
class MrxsAnalysis:
    """The one walk's result, which the plan carries out: the loaded slide and every decision
    about it.  The plan changes a copy of ``slide.ini`` and reads bytes it patches, nothing else."""

    slide: Slide
    ini_values: list[IniValueDecision] = field(default_factory=list)
    free_text: list[int] = field(default_factory=list)  # Slidedat.ini lines (comments, stray text) removed
    # associated record slot -> remove | blank | keep, as carried out: a label that cannot be blanked in
    # place is removed (its image decision shows what the policy asked, as ``inspect`` always did)
    actions: dict[int, str] = field(default_factory=dict)
    blanks: dict[int, bytes] = field(default_factory=dict)  # slot -> the blank label written in its place
    removed: set[int] = field(default_factory=set)  # slots removed (a label that cannot be blanked in place too)
    text_records: list[NonHierRecord] = field(default_factory=list)  # free-text records: zeroed
    preview_size: tuple[int, int] = _DEFAULT_PREVIEW_SIZE
    sizes: dict[Path, int] = field(default_factory=dict)  # every input file's size when analyzed

    def check_unchanged(self) -> None:
        """Refuse a slide whose files changed size since analysis (the decisions locate bytes in them)."""
        for p, size in self.sizes.items():
            try:
                now = p.stat().st_size
            except OSError:
                now = -1
            if now != size:
                raise CorruptInput(p, "the file changed between inspection and redaction")


class MrxsConverter(NativeConverter):
    name = "mrxs"
    title = "3DHistech MRXS"
    openslide_vendor = "mirax"
    extension = ".mrxs"

    def sniff(self, path: Path, head: bytes) -> bool:
        path = Path(path)
        if path.suffix.lower() != ".mrxs":
            return False
        ini = path.with_suffix("") / "Slidedat.ini"
        try:
            start = read_regular(ini, 4096)
        except WsianonError:
            return False
        return b"[GENERAL]" in start and b"SLIDE_ID" in start

    def commit_last(self, plan: Plan) -> list[str]:
        return [f.dest for f in plan.files if "/" not in f.dest]

    def _base(self, ctx: SlideContext, source: Path) -> str:
        return source.stem if ctx.policy.rename == "keep" else ctx.pseudonym

    def output_name(self, ctx: SlideContext, source: Path) -> str:
        return self._base(ctx, source) + ".mrxs"

    # -- analyze: the one walk ---------------------------------------------------------------
    def analyze(self, source: Path, policy: Policy) -> Decisions:
        """Load the slide and decide every ini value, free-text line, associated image, free-text
        record and the preview once (inspect and plan derive from this; the key is not needed)."""
        slide = load_slide(Path(source))
        an = MrxsAnalysis(slide)
        d = Decisions(
            format=self.name,
            source=slide.mrxs,
            policy=policy,
            input_files=[slide.mrxs, slide.ini.path, slide.index_path, *slide.datafiles],
            levels=slide.zoom_levels,
            analysis=an,
        )
        if not slide.index.supported:
            d.notes.append(
                f"Index.dat layout {_version(slide)} is not one OpenSlide reads: image data cannot be located, so every Data file is zeroed after its header"
            )
        _decide_ini(d, an, policy)
        _decide_records(d, an, policy)
        _decide_preview(d, an)
        an.sizes = {p: p.stat().st_size for p in d.input_files}
        return d

    # -- plan -----------------------------------------------------------------------------------
    def plan(self, inv: Inventory, ctx: SlideContext) -> Plan:
        """Carry out the decisions: the keyed SLIDE_ID, the ini rewritten (on a copy), records removed
        or blanked, free text zeroed, the preview replaced (nothing is decided here)."""
        d = self.decisions_for(inv, ctx.policy)
        an = d.analysis
        assert isinstance(an, MrxsAnalysis), "MrxsConverter.analyze keeps its walk"
        an.check_unchanged()
        slide = an.slide
        ini = copy.deepcopy(slide.ini)  # the decisions stay as they were for another plan
        base = self._base(ctx, slide.mrxs)
        plan = Plan(format=self.name)
        new_id = keyed_slide_id(ctx.key, slide.slide_id)

        # SLIDE_NAME is text inside the slide: the keyed pseudonym even with --rename keep (which
        # keeps the source's name on the files only; the stem inside would quarantine the slide)
        _plan_ini_values(plan, ini, an, new_id, ctx.pseudonym)
        _plan_member_names(plan, ini, len(slide.datafiles))
        _plan_ini_free_text(plan, ini, an)
        _plan_associated(plan, slide, ini, an)
        plan.files.append(FilePlan(dest=f"{base}.mrxs", content=neutral_jpeg(an.preview_size)))
        plan.remove("image", "preview", "replaced by a neutral image without metadata", slide.mrxs.suffix)
        plan.files.append(FilePlan(dest=f"{base}/{ini.path.name}", content=ini.render()))

        idx_fp = FilePlan(dest=f"{base}/{INDEX_NAME}", source=slide.index_path)
        data_fps = [FilePlan(dest=f"{base}/{data_name(i)}", source=p) for i, p in enumerate(slide.datafiles)]
        idx_fp.patches.append(idx.slide_id_patch(slide.slide_id, new_id))
        if slide.index.supported:
            _plan_records(plan, an, idx_fp, data_fps)
        else:
            _plan_unreadable_index(plan, slide, idx_fp)
        _plan_data_headers(plan, slide, data_fps, new_id)
        plan.files.append(idx_fp)
        plan.files.extend(data_fps)
        _note_other_files(plan, slide)
        return plan


def _shown(name: str | None) -> str:
    """A key, section, record or file name from the slide as the report may show it: made of the
    format's vocabulary, or the placeholder (another tool may have named a key after the patient)."""
    return public_name("mrxs", name or "")


def _version(slide: Slide) -> str:
    """Index.dat's version as a note may show it (its first bytes are the source's, not always a version)."""
    v = slide.index.version
    return repr(v) if re.fullmatch(r"[0-9]{2}\.[0-9]{2}", v) else "(not a version number)"


def _where(section: str | None) -> str:
    return f"[{_shown(section)}]"


# -- analyze steps ------------------------------------------------------------------------------


def _decide_ini(d: Decisions, an: MrxsAnalysis, policy: Policy) -> None:
    """Every Slidedat.ini value decided (those not kept are fields), every free-text line removed."""
    ini = an.slide.ini
    for i, l in enumerate(ini.lines):
        if l.kind != "kv" or l.deleted:
            continue
        word, new = ini_value_action(l.section or "", l.key or "", l.value or "", policy)
        action = Action(word)
        an.ini_values.append(IniValueDecision(i, action, new))
        if action is not Action.KEEP and l.value:
            d.fields.append(Field(f"Slidedat.ini:{_shown(l.key)}", l.value, action, _where(l.section)))
    for i, l in enumerate(ini.lines):
        if l.kind in ("comment", "other") and l.text.strip():
            an.free_text.append(i)
            d.fields.append(Field("Slidedat.ini:free text", l.text.strip().lstrip(";#").strip(), "remove", _where(l.section)))


def _decide_records(d: Decisions, an: MrxsAnalysis, policy: Policy) -> None:
    """The associated images (a label that cannot be blanked in place is removed) and the texts
    inside free-text records."""
    slide = an.slide
    kinds = rules()["associated"]
    an.actions = associated_actions(slide, policy)
    for slot, action in an.actions.items():
        rec = slide.records[slot]
        kind = kinds[rec.name]
        d.images.append(AssociatedImage(kind, f"{rec.name} (Data file {rec.fileno})", kind != "thumbnail" or action == "remove", action))
    final = dict(an.actions)
    an.blanks = label_blanks(slide, final)  # switches a label it cannot blank in place to 'remove'
    an.actions = final
    an.removed = {s for s, a in final.items() if a == "remove"}
    an.text_records = text_records(slide.records)
    for rec in an.text_records:
        for t in xml_texts(slide.blob(rec))[:200]:
            d.fields.append(Field(f"{_shown(rec.name)}:text", t, "blank", f"Data file {rec.fileno}"))


def _decide_preview(d: Decisions, an: MrxsAnalysis) -> None:
    """The text in the .mrxs preview JPEG; the preview itself is always replaced (by a neutral
    image of its size)."""
    mrxs = an.slide.mrxs
    try:
        preview = mrxs.read_bytes()
    except OSError as exc:
        raise CorruptInput(mrxs, f"cannot read: {os_reason(exc)}") from None
    for kind, t in jpeg_text_segments(preview):
        d.fields.append(Field(f"preview:{kind}", t, "remove", mrxs.name))
    d.images.append(AssociatedImage("preview", mrxs.name, True, "replace"))
    an.preview_size = _preview_size(mrxs)


# -- plan steps ---------------------------------------------------------------------------------


def _plan_ini_values(plan: Plan, ini: IniDoc, an: MrxsAnalysis, new_id: str, base: str) -> None:
    """SLIDE_ID keyed, SLIDE_NAME the pseudonym, dates by policy, the rest blanked unless safe."""
    for v in an.ini_values:
        l = ini.lines[v.line]
        if v.action is Action.KEEP:
            continue
        if v.action is Action.REPLACE:
            l.set_value(new_id)
        elif v.action is Action.DUMMY:
            l.set_value(base)
        elif l.value:
            l.set_value(v.new)
        else:
            continue  # an empty value blanked: nothing to report
        plan.remove("field", f"Slidedat.ini:{_shown(l.key)}", v.action.done, _where(l.section))


INDEX_NAME = "Index.dat"


def data_name(i: int) -> str:
    """The output name of Data file ``i`` (3DHistech's own naming)."""
    return f"Data{i:04d}.dat"


def _plan_member_names(plan: Plan, ini: IniDoc, nfiles: int) -> None:
    """The index and Data files take 3DHistech's own names (``Index.dat``, ``DataNNNN.dat``): the
    names in the source are text its writer chose (a case number, a patient's name), so none is
    carried over.  Every line of a repeated key is set, so no reader finds another name."""
    renamed = 0
    for l in ini.kv():
        new = None
        if l.section == "HIERARCHICAL" and l.key == "INDEXFILE":
            new = INDEX_NAME
        elif l.section == "DATAFILE" and l.key and l.key.startswith("FILE_") and l.key[5:].isdigit() and int(l.key[5:]) < nfiles:
            new = data_name(int(l.key[5:]))
        if new is not None and l.value != new:
            l.set_value(new)
            renamed += 1
    if renamed:
        plan.remove("name", "Index.dat / Data file names", "replaced by DataNNNN.dat / Index.dat", f"{renamed} name(s)")


def _plan_ini_free_text(plan: Plan, ini: IniDoc, an: MrxsAnalysis) -> None:
    for i in an.free_text:
        l = ini.lines[i]
        l.deleted = True
        plan.remove("field", "Slidedat.ini:free text", "removed", _where(l.section))


def _plan_associated(plan: Plan, slide: Slide, ini: IniDoc, an: MrxsAnalysis) -> None:
    """Removed records leave Slidedat.ini; blanked labels and images kept on request are reported."""
    kinds = rules()["associated"]
    for r in remove_records(slide, ini, an.removed):
        plan.remove("image", kinds.get(r.name, r.name), "wiped+removed", r.name)
    for slot in an.blanks:
        plan.remove("image", "label", "replaced by blank image", slide.records[slot].name)
    for slot, action in an.actions.items():
        if action == "keep" and kinds[slide.records[slot].name] != "thumbnail":
            plan.notes.append(f"{slide.records[slot].name} kept on request: it shows the slide label")


def _preview_size(mrxs: Path) -> tuple[int, int]:
    try:
        from PIL import Image

        with Image.open(mrxs) as im:
            size = im.size
    except Exception:
        return _DEFAULT_PREVIEW_SIZE
    # a header's size past any preview's (PIL opens up to 179 Mpx with a warning only): the
    # stand-in is not drawn at it (up to 537 MB and seconds of JPEG coding)
    return size if blank_size_ok(size) else _DEFAULT_PREVIEW_SIZE


def _plan_records(plan: Plan, an: MrxsAnalysis, idx_fp: FilePlan, data_fps: list[FilePlan]) -> None:
    """A walkable Index.dat: removed records dropped and destroyed, labels blanked, free text zeroed;
    the JPEG streams of tiles and kept records scrubbed of COM/APPn payloads by the pipeline."""
    slide, removed = an.slide, an.removed
    if removed:
        idx_fp.patches.append(idx.nonhier_table_patch(slide.index, slide.records, removed))
    undrawn = undrawn_spans(slide)
    for off, ln, fno in slide.index.hier_tiles:
        if (off, ln, fno) not in undrawn:
            data_fps[fno].jpeg_spans.append((off, ln))
    for rec in slide.records:  # kept associated images (the thumbnail) too
        if rec.present and rec.table_slot not in removed:
            data_fps[rec.fileno].jpeg_spans.append((rec.offset, rec.size))
    _destroy_removed(slide, idx_fp, data_fps, removed)
    _canonical_pages(plan, slide, idx_fp)
    _zero_other_hier(plan, slide, data_fps)
    _zero_undrawn(plan, undrawn, data_fps)
    for slot, data in an.blanks.items():
        rec = slide.records[slot]
        data_fps[rec.fileno].patches.append(Patch(rec.offset, rec.size, data + bytes(rec.size - len(data)), "label replaced by blank"))
        idx_fp.patches.append(idx.entry_size_patch(rec, len(data)))
    for rec in an.text_records:
        if rec.size:
            data_fps[rec.fileno].patches.append(Patch(rec.offset, rec.size, None, f"{_shown(rec.name)} zeroed"))
            plan.remove("field", _shown(rec.name), "zeroed", f"Data file {rec.fileno}")


def _canonical_pages(plan: Plan, slide: Slide, idx_fp: FilePlan) -> None:
    """Index.dat's pages that no reader reads whole, in one form: every NONHIER record's page one
    item (or none) with its reserved values and next-page pointer zero, every HIER record of a
    non-zoom layer without items.  What the source held there (free values no reader checks) is
    not carried over; ``mrxs-index-form`` proves the form from the output."""
    pages: set[int] = set()
    for rec in slide.records:
        if rec.pointer and rec.page not in pages:
            pages.add(rec.page)
            idx_fp.patches.append(idx.nonhier_page_patch(rec))
    for page in dict.fromkeys(slide.index.other_pages):
        if page not in pages:
            idx_fp.patches.append(idx.empty_page_patch(page))
    if pages or slide.index.other_pages:
        plan.remove(
            "structure", "Index.dat pages no reader reads whole", "written in their one form", f"{len(pages) + len(set(slide.index.other_pages))} page(s)"
        )


def _zero_other_hier(plan: Plan, slide: Slide, data_fps: list[FilePlan]) -> None:
    """Blobs of HIER layers other than the zoom levels, and of zoom-level items whose image index
    lies outside the IMAGENUMBER grid, zeroed: OpenSlide draws none of them, so nothing proves what
    they hold (a blob that also is a drawn tile stays: it is compared with the source tile by tile)."""
    tiles = set(slide.index.hier_tiles)
    n = 0
    for off, ln, fno in sorted(set(slide.index.other_hier)):
        if ln > 0 and (off, ln, fno) not in tiles:
            data_fps[fno].patches.append(Patch(off, ln, None, "blob of a non-zoom HIER layer zeroed"))
            n += 1
    if n:
        plan.remove("structure", "HIER items OpenSlide does not draw", "zeroed", f"{n} blob(s)")


def _zero_undrawn(plan: Plan, undrawn: set[tuple[int, int, int]], data_fps: list[FilePlan]) -> None:
    """Zoom-level images OpenSlide places nowhere (camera positions not scanned) zeroed: no viewer
    shows them, so nothing proves what they hold (a label photo would pass as a tile); every pixel
    OpenSlide draws stays as it was (``mrxs-unscanned`` proves them zero from the output)."""
    n = 0
    for off, ln, fno in sorted(undrawn):
        if ln > 0:
            data_fps[fno].patches.append(Patch(off, ln, None, "zoom-level image at a position not scanned zeroed"))
            n += 1
    if n:
        plan.remove("structure", "zoom-level images at positions not scanned (OpenSlide places none of their pixels)", "zeroed", f"{n} blob(s)")


def _destroy_removed(slide: Slide, idx_fp: FilePlan, data_fps: list[FilePlan], removed: set[int]) -> None:
    """A removed record's blob zeroed in its Data file and its Index.dat entry zeroed (once per entry)."""
    zeroed_entries: set[int] = set()
    for slot in sorted(removed):
        rec = slide.records[slot]
        if not rec.present:
            continue
        data_fps[rec.fileno].patches.append(Patch(rec.offset, rec.size, None, f"{_shown(rec.name)} pixels destroyed"))
        if rec.entry_offset not in zeroed_entries:
            zeroed_entries.add(rec.entry_offset)
            idx_fp.patches.append(idx.entry_zero_patch(rec))


def _plan_unreadable_index(plan: Plan, slide: Slide, idx_fp: FilePlan) -> None:
    """An Index.dat layout we cannot walk: zeroed after its header (the Data files follow)."""
    plan.notes.append(f"Index.dat layout {_version(slide)} unsupported: Index.dat and Data files zeroed after their headers")
    patch = idx.zero_after_header_patch(slide.index, slide.slide_id)
    if patch is not None:
        idx_fp.patches.append(patch)
    plan.remove("structure", "Index.dat", "zeroed after header (layout unsupported)")


def _plan_data_headers(plan: Plan, slide: Slide, data_fps: list[FilePlan], new_id: str) -> None:
    """Every Data file's header written in one form, whatever the source held there: the version
    Index.dat carries and the keyed SLIDE_ID (the output Index.dat's own header)."""
    scan_n = rules()["data_header_scan_bytes"]
    header = slide.index.version.encode("latin-1") + new_id.encode("latin-1")
    for i, (p, fp) in enumerate(zip(slide.datafiles, data_fps)):
        fp.patches.extend(header_patches(p, slide.slide_id, new_id, header, scan_n, zero_rest=not slide.index.supported))
        plan.remove("field", "Data file header:SLIDE_ID", "replaced (keyed)", f"FILE_{i}")


def _note_other_files(plan: Plan, slide: Slide) -> None:
    known = set(slide.datafiles) | {slide.index_path, slide.ini.path}
    others = sorted(q.name for q in slide.folder.iterdir() if q.is_file() and q not in known)
    if others:
        plan.notes.append(f"{len(others)} other file(s) in the slide folder are not part of the slide and were not copied")
