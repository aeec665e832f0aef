"""Decide once for the Roche/Ventana BIF, Leica SCN and generic TIFF redactors.

Each of them walks the source once (``analyze``): ``inspect`` shows those
decisions and ``plan`` only carries them out, so

* a ``wsianon run`` (detect, inspect, plan) classifies the IFDs, decides each
  ASCII tag and cleans each XML/XMP exactly once (counted);
* a plan from an inventory ``inspect`` made under the same policy decides
  nothing again and reads no text value, and planning twice gives the same
  plan (the decisions are not used up);
* a plan for another policy decides afresh and gives that policy's result;
* every inventory field with a non-KEEP action is a report line with its
  action's word, every removed image a "wiped+unlinked" line, and the report
  names nothing that is not a decision;
* a file whose IFDs changed between inspection and redaction is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tifffile

from tests.fixtures.bif_gen import make_bif
from tests.fixtures.decide_helpers import CallCounter, pipeline_plan
from tests.fixtures.generic_gen import make_generic_tiff
from tests.fixtures.scn_gen import make_scn
from wsianon.converters.base import Inventory, SlideContext
from wsianon.converters.generic import GenericTiffConverter
from wsianon.converters.generic import redactor as generic_mod
from wsianon.converters.leica import LeicaConverter
from wsianon.converters.leica import redactor as leica_mod
from wsianon.converters.ventana import VentanaConverter
from wsianon.converters.ventana import redactor as ventana_mod
from wsianon.errors import CorruptInput
from wsianon.io.plan import Plan
from wsianon.io.tiff import XMP, TiffStructure
from wsianon.profiles.actions import Action
from wsianon.profiles.policy import Policy

POLICIES = {
    "default": Policy(),
    "label-blank": Policy(label="blank"),
    "macro-keep": Policy(macro="keep"),
    "dates-year": Policy(dates="year"),
}
BIF_LABEL_NOTE = "BIF label: --label blank is not offered for BIF"


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("once")
    return {
        "ventana": make_bif(d / "s.bif").path,
        "ventana-front-directory": make_bif(d / "front.bif", thumbnail=False).path,  # level 0 keeps its EncodeInfo XMP
        "leica": make_scn(d / "s.scn").path,
        "leica-macro-last": make_scn(d / "last.scn", macro_first=False).path,
        "generic-tiff": make_generic_tiff(d / "s.tif").path,
    }


CONVERTERS = {"ventana": VentanaConverter, "leica": LeicaConverter, "generic-tiff": GenericTiffConverter}


def _converter(slide: str):
    return CONVERTERS[slide.split("-front")[0].split("-macro")[0]]()


def ctx(policy: Policy) -> SlideContext:
    return SlideContext("PSEUDO01", b"k" * 32, policy)


def _counts(*counters: CallCounter) -> list[int]:
    return [len(c.calls) for c in counters]


def _n_ifds(path: Path, tag: int | None = None) -> int:
    with TiffStructure(path) as ts:
        return sum(1 for ifd in ts.ifds if tag is None or tag in ifd)


def _reuses_the_decisions(conv, path: Path, policy: Policy, decided: list[CallCounter], monkeypatch) -> Plan:
    """A plan from ``inspect``'s inventory under the same policy: no decision taken again, no text
    value read, the same plan twice and the same plan as from a fresh analysis."""
    inv = conv.inspect(path, policy=policy)
    before = _counts(*decided)
    reads = CallCounter(monkeypatch, TiffStructure, "ascii")
    first = conv.plan(inv, ctx(policy))
    again = conv.plan(inv, ctx(policy))
    assert _counts(*decided) == before  # nothing decided again
    assert reads.calls == []  # every value the plan writes was decided by analyze
    fresh = type(conv)().plan(Inventory(format=conv.name, path=path), ctx(policy))  # no decisions: analyzes itself
    for p in (again, fresh):
        assert p.describe() == first.describe() and p.files[0].append == first.files[0].append
    return first


def test_ventana_decides_each_ifd_and_tag_once(slides, monkeypatch):
    path = slides["ventana"]
    walk = CallCounter(monkeypatch, VentanaConverter, "_analyze")
    ascii_ = CallCounter(monkeypatch, ventana_mod, "decide_ascii")
    xml = CallCounter(monkeypatch, ventana_mod, "clean_xml")
    n_ifds, n_xmp = _n_ifds(path), _n_ifds(path, XMP)
    policy = Policy(label="blank", dates="year")
    plan = pipeline_plan(path, ctx(policy), allow_generic=True)
    assert _counts(walk, ascii_, xml) == [1, n_ifds, n_xmp]  # detection reads IFD 0's XMP, decides nothing
    assert any(n.startswith(BIF_LABEL_NOTE) for n in plan.notes)  # the --label blank refusal, decided by analyze
    _reuses_the_decisions(VentanaConverter(), path, policy, [walk, ascii_, xml], monkeypatch)
    # an inventory made under the default policy: a plan for --label blank --dates year decides afresh
    inv = VentanaConverter().inspect(path)
    before = _counts(walk, ascii_, xml)
    plan = VentanaConverter().plan(inv, ctx(policy))
    assert _counts(walk, ascii_, xml) == [before[0] + 1, before[1] + n_ifds, before[2] + n_xmp]
    assert any(n.startswith(BIF_LABEL_NOTE) for n in plan.notes)
    assert any(r.action == Action.YEAR.done for r in plan.removals)
    default = VentanaConverter().plan(inv, ctx(Policy()))
    assert not any(n.startswith(BIF_LABEL_NOTE) for n in default.notes)
    assert not any(r.action == Action.YEAR.done for r in default.removals)


@pytest.mark.parametrize("slide", ["leica", "leica-macro-last"])
def test_leica_decides_each_ifd_and_tag_once(slides, slide, monkeypatch):
    path = slides[slide]
    walk = CallCounter(monkeypatch, LeicaConverter, "_analyze")
    ascii_ = CallCounter(monkeypatch, leica_mod, "decide_ascii")
    xml = CallCounter(monkeypatch, LeicaConverter, "_clean")
    macro = CallCounter(monkeypatch, LeicaConverter, "_decide_macro")
    n_ifds = _n_ifds(path)
    policy = Policy(dates="year")
    plan = pipeline_plan(path, ctx(policy), allow_generic=True)
    assert _counts(walk, ascii_, xml, macro) == [1, n_ifds, 1, 1]
    assert any(r.kind == "image" and r.name == "macro" for r in plan.removals)
    _reuses_the_decisions(LeicaConverter(), path, policy, [walk, ascii_, xml, macro], monkeypatch)
    # an inventory made under the default policy (macro removed): a plan for --macro keep decides afresh
    inv = LeicaConverter().inspect(path)
    assert {i.action for i in inv.images} == {Action.REMOVE}
    before = _counts(walk, ascii_, xml, macro)
    plan = LeicaConverter().plan(inv, ctx(Policy(macro="keep")))
    assert _counts(walk, ascii_, xml, macro) == [before[0] + 1, before[1] + n_ifds, before[2] + 1, before[3] + 1]
    macro_ifds = {i.where for i in inv.images} - {"IFD 0"}  # IFD 0's XML lives on in the new first IFD
    assert not any(r.kind == "image" for r in plan.removals)
    assert not any(r.action == Action.REMOVE.done and r.where in macro_ifds for r in plan.removals)  # its fields stay, cleaned
    # and the default inventory's own plan still removes the macro and its fields (the decisions were not changed)
    default = LeicaConverter().plan(inv, ctx(Policy())).removals
    assert any(r.kind == "image" and r.name == "macro" for r in default)
    assert any(r.kind == "field" and r.action == Action.REMOVE.done and r.where in macro_ifds for r in default)


def test_generic_decides_each_ifd_and_tag_once(slides, monkeypatch):
    path = slides["generic-tiff"]
    walk = CallCounter(monkeypatch, GenericTiffConverter, "_associated")
    ascii_ = CallCounter(monkeypatch, generic_mod, "decide_ascii")
    kind = CallCounter(monkeypatch, generic_mod, "describe_structure")
    n_ifds = _n_ifds(path)
    policy = Policy(dates="year")
    plan = pipeline_plan(path, ctx(policy), allow_generic=True)
    assert _counts(walk, ascii_) == [1, n_ifds]
    assert sorted(r.name for r in plan.removals if r.kind == "image") == ["label", "macro"]
    _reuses_the_decisions(GenericTiffConverter(), path, policy, [walk, ascii_, kind], monkeypatch)
    # an inventory made under the default policy: a plan for --macro keep decides afresh
    inv = GenericTiffConverter().inspect(path)
    before = _counts(walk, ascii_)
    plan = GenericTiffConverter().plan(inv, ctx(Policy(macro="keep")))
    assert _counts(walk, ascii_) == [before[0] + 1, before[1] + n_ifds]
    assert [r.name for r in plan.removals if r.kind == "image"] == ["label"]
    # the kept macro's XMP blob is zeroed (a decision of the macro-keep walk), the default walk unlinks it
    assert ("field", "tag 700", "zeroed", "IFD 2") in {(r.kind, r.name, r.action, r.where) for r in plan.removals}
    assert ("tag 700", "IFD 2") not in {(f.name, f.where) for f in inv.fields}


# -- the report is the decisions ---------------------------------------------------------


@pytest.mark.parametrize("policy_name", list(POLICIES))
@pytest.mark.parametrize("slide", ["ventana", "ventana-front-directory", "leica", "leica-macro-last", "generic-tiff"])
def test_report_lines_are_the_decisions(slides, slide, policy_name):
    path, policy = slides[slide], POLICIES[policy_name]
    conv = _converter(slide)
    inv = conv.inspect(path, policy=policy)
    d = inv.decisions
    assert d is not None and d.made_for(policy) and inv.fields is d.fields and inv.images is d.images
    plan = conv.plan(inv, ctx(policy))
    removed = {(r.kind, r.name, r.where): r.action for r in plan.removals}
    unlinked = {img.where for img in d.images if img.action is Action.REMOVE}
    for img in d.images:
        key = ("image", img.kind, img.where)
        if img.action is Action.REMOVE:
            assert removed[key] == "wiped+unlinked"
        else:
            assert img.action is Action.KEEP and key not in removed
    carried = 0
    for f in d.fields:
        key = ("field", f.name, f.where)
        if f.action is Action.KEEP:
            assert removed.get(key, Action.KEEP.done) == Action.KEEP.done  # the SCN report names a kept XML date
        elif conv.name == "generic-tiff" and f.where in unlinked:
            assert key not in removed  # a wiped and unlinked IFD's text goes with it (its image line says so)
        else:
            assert removed[key] == f.action.done, f.name
            carried += 1
    assert carried >= 5
    decided = {("field", f.name, f.where) for f in d.fields} | {("image", i.kind, i.where) for i in d.images}
    assert set(removed) <= decided
    # policy-dependent decisions, made by analyze
    assert any(f.action is Action.YEAR for f in d.fields) is (policy.dates == "year")
    macro = [i for i in d.images if i.kind == "macro"]
    assert all(i.action is (Action.KEEP if policy.macro == "keep" else Action.REMOVE) for i in macro)
    assert all(i.action is Action.REMOVE for i in d.images if i.kind == "label")  # never blanked: always wiped
    if conv.name == "ventana":
        assert unlinked and all(f.action is Action.REMOVE for f in d.fields if f.where in unlinked)
        assert any(n.startswith(BIF_LABEL_NOTE) for n in plan.notes) is (policy.label == "blank")


@pytest.mark.parametrize("slide", ["ventana", "leica", "generic-tiff"])
def test_plan_refuses_a_file_that_changed_after_inspection(slides, slide, tmp_path):
    path = tmp_path / slides[slide].name
    path.write_bytes(slides[slide].read_bytes())
    conv = _converter(slide)
    inv = conv.inspect(path)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:  # another file under the same name: one IFD
        tw.write(tifffile.imread(slides[slide], key=0)[:256, :256], tile=(256, 256), photometric="rgb", metadata=None)
    with pytest.raises(CorruptInput, match="changed between inspection and redaction"):
        conv.plan(inv, ctx(Policy()))
