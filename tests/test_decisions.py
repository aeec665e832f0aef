"""Decide once: inventory, plan and report all derive from one ``analyze`` of the source.

* the Action enum: the strings the inventory always showed, Annex E letters and
  report words parse into it, and it survives JSON unchanged;
* Aperio and NDPI: every field and image decision is carried out by the plan
  (a patch over the entry, a report line with the action's word), every
  inventory field is a decision, and nothing in the plan is decided elsewhere;
* Aperio and NDPI walk the source once: inspect + plan classify each IFD and
  decide each text entry exactly once (counted), and a plan for a different
  policy decides afresh rather than reusing stale decisions;
* the run report (``wsianon run``) names each field with its decision's action.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.decide_helpers import CallCounter, pipeline_plan
from tests.fixtures.ndpi_gen import make_ndpi_info
from tests.fixtures.svs_gen import write_svs
from wsianon.converters.aperio import redactor as aperio_mod
from wsianon.converters.ndpi import redactor as ndpi_mod
from wsianon.converters.aperio import AperioConverter
from wsianon.converters.base import Field, Inventory, SlideContext
from wsianon.converters.decisions import Decisions, FieldDecision, ImageDecision
from wsianon.converters.ndpi import NdpiConverter
from wsianon.io.plan import Plan
from wsianon.io.tiff import TiffStructure
from wsianon.profiles.actions import Action
from wsianon.profiles.policy import Policy

POLICIES = [
    Policy(),
    Policy(label="blank", dates="year"),
    Policy(macro="keep", dates="keep"),
]


@pytest.fixture(scope="module")
def svs(tmp_path_factory) -> Path:
    return write_svs(tmp_path_factory.mktemp("svs") / "s.svs").path


@pytest.fixture(scope="module")
def ndpi(tmp_path_factory) -> Path:
    return make_ndpi_info(tmp_path_factory.mktemp("ndpi") / "s.ndpi").path


def ctx(policy: Policy) -> SlideContext:
    return SlideContext("PSEUDO01", b"k" * 32, policy)


# -- the one vocabulary --------------------------------------------------------------------


def test_action_values_are_the_inventory_strings_and_parse_every_spelling():
    assert [a.value for a in Action] == ["keep", "blank", "remove", "dummy", "year", "zero", "clean", "replace"]
    # a StrEnum: equal to (and serialized as) its old string
    assert Action.BLANK == "blank" and json.dumps({"a": Action.YEAR}) == '{"a": "year"}'
    # DICOM Annex E letters (the profile's data) parse into the same members
    assert [Action(c) for c in "XZDKCU"] == [Action.REMOVE, Action.BLANK, Action.DUMMY, Action.KEEP, Action.CLEAN, Action.REPLACE]
    assert all(Action(a.dicom_code) is a for a in Action if a not in (Action.YEAR, Action.ZERO))
    # one report word per action, and back
    words = [a.done for a in Action]
    assert len(set(words)) == len(words)
    assert all(Action.parse(a.done) is a and Action.parse(a.value) is a for a in Action)
    with pytest.raises(ValueError):
        Action("blanked out")


def test_decisions_take_strings_but_hold_the_enum():
    f = Field("tag 306", "2017:03:14", "year", "IFD 0")
    assert isinstance(f, FieldDecision) and f.action is Action.YEAR
    i = ImageDecision("label", "IFD 3", True, "blank")
    assert i.action is Action.BLANK
    assert f.removal().as_dict() == {"kind": "field", "name": "tag 306", "action": "reduced to year", "where": "IFD 0"}
    assert "2017" not in repr(f)  # the value stays out of logs and reprs


# -- plan and inventory agree with the decisions -------------------------------------------


def _entry_patched(plan: Plan, ts: TiffStructure, where: str, name: str) -> bool:
    """True when some patch overlaps the entry's record or value bytes (the tag is named in ``name``)."""
    ifd = ts.ifds[int(where.split()[-1])]
    tag = int(name.split()[1]) if name.startswith("tag ") else 270  # ImageDescription:<key>
    e = ifd.entries[tag]
    spans = [(e.entry_offset, e.entry_offset + 12), (e.value_offset, e.value_offset + max(e.size, 1))]
    return any(p.offset < b and a < p.end for p in plan.files[0].patches for a, b in spans)


def _assert_agree(conv, path: Path, policy: Policy) -> tuple[Decisions, Plan]:
    d = conv.analyze(path, policy)
    inv = conv.inspect(path, policy=policy)
    assert isinstance(inv, Inventory) and inv.decisions is not None
    # every inventory field and image equals a decision (inspect derives from the same walk)
    assert inv.public(show_values=True) == d.inventory().public(show_values=True)
    assert inv.fields == d.fields and inv.images == d.images and inv.levels == d.levels
    assert d.inventory().fields is d.fields  # the view holds the decisions themselves
    plan = conv.plan(inv, ctx(policy))
    removed = {(r.kind, r.name, r.where): r.action for r in plan.removals}
    removed_ifds = {img.where for img in d.images if img.action is Action.REMOVE}
    with TiffStructure(path) as ts:
        for img in d.images:
            if img.action is Action.REMOVE:
                assert removed[("image", img.kind, img.where)] == "wiped+unlinked"
                data = ts.data_spans(ts.ifds[int(img.where.split()[-1])])
                wiped = {(p.offset, p.length) for p in plan.files[0].patches if p.data is None}
                assert all((o, c) in wiped for o, c in data if c), img
            elif img.action is Action.BLANK:
                assert removed[("image", img.kind, img.where)] == "replaced by blank image"
            else:
                assert ("image", img.kind, img.where) not in removed
        carried = 0
        for f in d.fields:
            key = ("field", f.name, f.where)
            if f.action is Action.KEEP:
                assert key not in removed or removed[key] != Action.KEEP.done, f.name
                continue
            if f.where in removed_ifds and conv.name == "aperio":
                continue  # an unlinked Aperio image: its whole text is blanked with it (checked below)
            # the decision is carried out: its word in the report, a patch over its entry
            assert Action.parse(removed[key]) is f.action, (f.name, removed[key])
            assert _entry_patched(plan, ts, f.where, f.name), f.name
            carried += 1
        assert carried >= 5
        # nothing reported that is not a decision
        decided = {("field", f.name, f.where) for f in d.fields} | {("image", i.kind, i.where) for i in d.images}
        assert {k for k in removed if k[0] in ("field", "image")} <= decided
        if conv.name == "aperio":
            for where in removed_ifds:
                ifd = ts.ifds[int(where.split()[-1])]
                for e in ts.iter_ascii_entries(ifd):
                    assert _entry_patched(plan, ts, where, f"tag {e.tag}")
    return d, plan


@pytest.mark.parametrize("policy", POLICIES, ids=["default", "blank-year", "keep"])
def test_aperio_plan_and_inventory_agree_with_decisions(svs, policy):
    d, plan = _assert_agree(AperioConverter(), svs, policy)
    label = next(i for i in d.images if i.kind == "label")
    assert label.action is (Action.BLANK if policy.label == "blank" else Action.REMOVE)
    dt = next(f for f in d.fields if f.name == "tag 306")
    assert dt.action is {"remove": Action.BLANK, "year": Action.YEAR, "keep": Action.KEEP}[policy.dates]


@pytest.mark.parametrize("policy", POLICIES, ids=["default", "blank-year", "keep"])
def test_ndpi_plan_and_inventory_agree_with_decisions(ndpi, policy):
    d, plan = _assert_agree(NdpiConverter(), ndpi, policy)
    macro = next(i for i in d.images if i.kind == "macro")
    assert macro.action is (Action.KEEP if policy.macro == "keep" else Action.REMOVE)
    zeroed = [f for f in d.fields if f.action is Action.ZERO]
    assert zeroed and all(not f.canary for f in zeroed)  # slide positions: numbers, not canaries


# -- one walk ------------------------------------------------------------------------------


def _ascii_entries(path: Path) -> int:
    with TiffStructure(path) as ts:
        return sum(1 for ifd in ts.ifds for _ in ts.iter_ascii_entries(ifd))


def test_aperio_decides_each_ifd_and_tag_once(svs, monkeypatch):
    classify = CallCounter(monkeypatch, aperio_mod, "classify_ifd")
    rewrite = CallCounter(monkeypatch, aperio_mod.DescriptionRewrite, "rewrite")
    reads = CallCounter(monkeypatch, TiffStructure, "ascii")
    with TiffStructure(svs) as ts:
        n_ifds = len(ts.ifds)
        n_desc = sum(1 for ifd in ts.ifds if 270 in ifd)
    policy = Policy(label="blank", dates="year")
    plan = pipeline_plan(svs, ctx(policy))
    assert plan.removals
    assert len(classify.calls) == n_ifds  # detection reads IFD 0's description, never classifies
    assert len(rewrite.calls) == n_desc
    # the plan reads no text value: everything it writes was decided by analyze
    conv = AperioConverter()
    inv = conv.inspect(svs, policy=policy)
    reads.calls.clear()
    conv.plan(inv, ctx(policy))
    assert reads.calls == []
    # a plan for another policy than the inventory's decides afresh (no stale decisions)
    inv = AperioConverter().inspect(svs)  # default policy: label removed
    before = len(classify.calls)
    plan = AperioConverter().plan(inv, ctx(policy))
    assert len(classify.calls) == before + n_ifds
    assert any(r.action == "replaced by blank image" for r in plan.removals)


def test_ndpi_decides_each_ifd_and_tag_once(ndpi, monkeypatch):
    classify = CallCounter(monkeypatch, ndpi_mod, "classify")
    ascii_action = CallCounter(monkeypatch, ndpi_mod, "_ascii_action")
    pmap = CallCounter(monkeypatch, ndpi_mod.PropertyMapRewrite, "rewrite")
    with TiffStructure(ndpi) as ts:
        n_ifds = len(ts.ifds)
        n_pmap = sum(1 for ifd in ts.ifds if 65449 in ifd)
    n_ascii = _ascii_entries(ndpi)
    plan = pipeline_plan(ndpi, ctx(Policy(dates="year")))
    assert plan.removals
    assert len(classify.calls) == n_ifds
    assert len(pmap.calls) == n_pmap
    assert len(ascii_action.calls) == n_ascii - n_pmap
    conv = NdpiConverter()
    inv = conv.inspect(ndpi, policy=Policy(dates="year"))
    reads = CallCounter(monkeypatch, TiffStructure, "ascii")
    conv.plan(inv, ctx(Policy(dates="year")))
    assert reads.calls == []  # the plan reads no text value: analyze decided them all
    inv = NdpiConverter().inspect(ndpi)
    before = len(classify.calls)
    plan = NdpiConverter().plan(inv, ctx(Policy(macro="keep")))
    assert len(classify.calls) == before + n_ifds
    assert "macro" not in {r.name for r in plan.removals if r.kind == "image"}


# -- the report ----------------------------------------------------------------------------


def test_report_actions_round_trip_to_the_decisions(cli, svs, tmp_path):
    policy = Policy(label="blank", dates="year")
    code, out, err = cli("run", svs, "-o", tmp_path / "out", "--label", "blank", "--dates", "year")
    assert code == 0, out + err
    report = json.loads((tmp_path / "out" / "wsianon-report.json").read_text())
    (slide,) = report["slides"]
    d = AperioConverter().analyze(svs, policy)
    decided = {(f.name, f.where): f.action for f in d.fields}
    fields = [r for r in slide["removed"] if r["kind"] == "field" and (r["name"], r["where"]) in decided]
    assert len(fields) >= 5
    for r in fields:
        assert Action.parse(r["action"]) is decided[(r["name"], r["where"])], r
    assert {Action.parse(r["action"]) for r in fields} >= {Action.BLANK, Action.YEAR}
    # inspect --json shows the enum's values, which parse back to the same decisions
    code, out, err = cli("inspect", "--json", svs)
    assert code == 0
    shown = {(f["name"], f["where"]): f["action"] for f in json.loads(out)[0]["fields"]}
    dflt = {(f.name, f.where): f.action for f in AperioConverter().analyze(svs, Policy()).fields}
    assert shown and all(Action(v) is dflt[k] and v == dflt[k].value for k, v in shown.items())


def test_plan_refuses_a_file_that_changed_after_analysis(tmp_path):
    from wsianon.errors import CorruptInput

    path = write_svs(tmp_path / "s.svs").path
    conv = AperioConverter()
    inv = conv.inspect(path)
    write_svs(path, with_macro=False)  # one IFD fewer: the decisions no longer describe the file
    with pytest.raises(CorruptInput, match="changed between inspection and redaction"):
        conv.plan(inv, ctx(Policy()))
