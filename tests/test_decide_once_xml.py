"""Decide once for the Philips TIFF, Philips iSyntax and 3DHistech MRXS redactors.

``analyze(source, policy)`` is the one walk and needs no key: the DPUfsImport XML
(Philips TIFF, iSyntax) is decided attribute by attribute with UIDs decided
dummies, MRXS's ini values, associated images and free-text records are decided
once; ``inspect`` is a view of those decisions and ``plan`` only renders them
(the keyed UIDs / SLIDE_ID from ``ctx.key``).  Counted here, per format:

* inspect + plan through the pipeline decide each thing exactly once (the XML walk
  itself decides each attribute by one call, but for those of an image object the
  policy keeps or blanks, decided twice within the walk as they always were);
* ``plan`` on an inventory from ``inspect`` with the same policy decides nothing;
* two plans from the same decisions with different keys differ only in the keyed
  values (and a plan leaves the decisions as they were for the next one);
* a plan for another policy than the inventory's decides afresh;
* every inventory field that is not kept is a report line, with its action's word.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.fixtures.decide_helpers import CallCounter, pipeline_plan
from tests.fixtures.isyntax_gen import make_isyntax
from tests.fixtures.mrxs_gen import make_mrxs
from tests.fixtures.philips_gen import make_philips
from wsianon.converters import dpufs
from wsianon.converters.base import SlideContext
from wsianon.converters.isyntax import ISyntaxConverter
from wsianon.converters.isyntax import redactor as isyntax_mod
from wsianon.converters.mrxs import MrxsConverter, keyed_slide_id
from wsianon.converters.mrxs import redactor as mrxs_mod
from wsianon.converters.mrxs.ini import IniDoc
from wsianon.converters.philips import PhilipsConverter
from wsianon.converters.philips import redactor as philips_mod
from wsianon.io.keyed import keyed_uid
from wsianon.io.plan import Plan, apply_copy
from wsianon.io.tiff import IMAGE_DESCRIPTION, TiffStructure
from wsianon.profiles.actions import Action
from wsianon.profiles.policy import Policy

KEY_A = b"a" * 32
POLICY = Policy(label="blank", dates="year")


@pytest.fixture(scope="module")
def philips(tmp_path_factory) -> Path:
    return make_philips(tmp_path_factory.mktemp("philips") / "p.tiff").path


@pytest.fixture(scope="module")
def philips_ifd(tmp_path_factory) -> Path:
    return make_philips(tmp_path_factory.mktemp("philips_ifd") / "p.tiff", images_in="ifd").path


@pytest.fixture(scope="module")
def isyntax(tmp_path_factory) -> Path:
    return make_isyntax(tmp_path_factory.mktemp("isyntax") / "i.isyntax").path


@pytest.fixture(scope="module")
def mrxs(tmp_path_factory) -> Path:
    return make_mrxs(tmp_path_factory.mktemp("mrxs")).mrxs


def _counters(monkeypatch, fmt: str) -> dict[str, CallCounter]:
    """The functions that decide, per format."""
    if fmt == "mrxs":
        names = ["ini_value_action", "associated_actions", "label_blanks", "text_records", "xml_texts"]
        return {n: CallCounter(monkeypatch, mrxs_mod, n) for n in names}
    out = {n: CallCounter(monkeypatch, dpufs.XmlCleaner, n) for n in ("_decide_attribute", "_decide_image")}
    if fmt == "philips":
        out["decide_ascii"] = CallCounter(monkeypatch, philips_mod, "decide_ascii")
    else:
        out["normalize_markup"] = CallCounter(monkeypatch, isyntax_mod, "normalize_markup")
    return out


def _counts(counters: dict[str, CallCounter]) -> dict[str, int]:
    return {n: len(c.calls) for n, c in counters.items()}


def _reset(counters: dict[str, CallCounter]) -> None:
    for c in counters.values():
        c.calls.clear()


def ctx(policy: Policy, key: bytes = KEY_A) -> SlideContext:
    return SlideContext("PSEUDO01", key, policy)


CONVERTERS = {"philips": PhilipsConverter, "isyntax": ISyntaxConverter, "mrxs": MrxsConverter}


# -- one walk, counted ----------------------------------------------------------------------


def _expected_once(fmt: str, path: Path, counts: dict[str, int]) -> None:
    """What one walk decides, counted from the source itself where that is simple."""
    if fmt == "philips":
        with TiffStructure(path) as ts:
            assert counts["decide_ascii"] == len(ts.ifds)
    if fmt in ("philips", "isyntax"):
        assert counts["_decide_image"] == 2  # the label and the macro objects
        assert counts["_decide_attribute"] >= 20
    if fmt == "isyntax":
        assert counts["normalize_markup"] == 1
    if fmt == "mrxs":
        ini = IniDoc((path.with_suffix("") / "Slidedat.ini").read_bytes(), path)
        assert counts["ini_value_action"] == len(ini.kv())
        assert counts["associated_actions"] == counts["label_blanks"] == counts["text_records"] == 1


@pytest.mark.parametrize("fmt", ["philips", "isyntax", "mrxs"])
def test_decides_each_field_once(fmt, philips, isyntax, mrxs, monkeypatch):
    path = {"philips": philips, "isyntax": isyntax, "mrxs": mrxs}[fmt]
    conv = CONVERTERS[fmt]()
    counters = _counters(monkeypatch, fmt)
    d = conv.analyze(path, POLICY)  # one walk, no key
    once = _counts(counters)
    _expected_once(fmt, path, once)
    assert type(d.analysis).__module__ == type(conv).__module__  # the format keeps its own walk for its plan
    # inspect + plan through the pipeline: every decision made exactly once
    _reset(counters)
    plan = pipeline_plan(path, ctx(POLICY))
    assert plan.removals
    assert _counts(counters) == once
    # plan on an inventory from inspect with the same policy decides nothing again
    inv = conv.inspect(path, policy=POLICY)
    assert inv.decisions is not None and inv.decisions.analysis is not None
    _reset(counters)
    conv.plan(inv, ctx(POLICY))
    conv.plan(inv, ctx(POLICY, b"b" * 32))
    assert _counts(counters) == dict.fromkeys(once, 0)
    # inspect decides without the key: the inventory is the same whatever key a plan later uses
    assert conv.inspect(path, policy=POLICY).public(show_values=True) == inv.public(show_values=True)


@pytest.mark.parametrize("fmt", ["philips", "isyntax", "mrxs"])
def test_a_plan_for_another_policy_decides_afresh(fmt, philips, isyntax, mrxs, monkeypatch):
    path = {"philips": philips, "isyntax": isyntax, "mrxs": mrxs}[fmt]
    conv = CONVERTERS[fmt]()
    inv = conv.inspect(path)  # default policy: label and macro removed
    counters = _counters(monkeypatch, fmt)
    keep = Policy(macro="keep")
    plan = conv.plan(inv, ctx(keep))
    counts = _counts(counters)
    assert all(n >= 1 for n in counts.values()), counts  # a fresh walk for the plan's policy
    _reset(counters)
    conv.analyze(path, keep)
    assert _counts(counters) == counts  # ... exactly one
    images = {r.name: r.action for r in plan.removals if r.kind == "image"}
    if fmt == "mrxs":
        assert "macro" not in images and any("kept on request" in n for n in plan.notes)
    else:
        assert images["macro"] == Action.KEEP.done and images["label"] == Action.REMOVE.done
    # and the inventory's own decisions are untouched
    assert next(i for i in inv.images if i.kind == "macro").action is Action.REMOVE


@pytest.mark.parametrize("fmt", ["philips", "isyntax"])
def test_xml_walk_decides_each_attribute_once(fmt, philips, isyntax, monkeypatch):
    """Each leaf attribute is decided by one call, those of an image object the policy keeps or blanks
    too: decided in the object's own walk, which the document's walk passes by (a second decision
    took the object's year-reduced dates for source values: test_option_matrix's
    blank-keep-year-philips)."""
    path = {"philips": philips, "isyntax": isyntax}[fmt]
    counter = CallCounter(monkeypatch, dpufs.XmlCleaner, "_decide_attribute")
    d = CONVERTERS[fmt]().analyze(path, Policy())  # label and macro objects removed
    elements = [c[1] for c in counter.calls]
    assert len(elements) >= 20 and len({id(e) for e in elements}) == len(elements)
    assert d.analysis is not None
    counter.calls.clear()
    CONVERTERS[fmt]().analyze(path, Policy(label="blank"))
    calls = [c[1] for c in counter.calls]
    assert len({id(e) for e in calls}) == len(calls)  # every attribute once
    assert len(calls) > len(elements)  # ... those of the label object too, now kept (blanked)


# -- keys: rendered, never decided ---------------------------------------------------------


def _same_length_key(uids: list[str]) -> bytes:
    """A second key whose keyed UIDs have the lengths KEY_A's have (so the outputs align byte for byte)."""
    want = [len(keyed_uid(KEY_A, u)) for u in uids]
    for n in range(500):
        k = b"key-%d" % n + bytes(26)
        if [len(keyed_uid(k, u)) for u in uids] == want:
            return k
    raise AssertionError("no second key found")  # pragma: no cover (about one key in ten fits)


def _xml_of(fmt: str, path: Path) -> ET.Element:
    if fmt == "philips":
        with TiffStructure(path) as ts:
            raw = ts.raw(ts.ifds[0].entries[IMAGE_DESCRIPTION])
    else:
        raw = isyntax_mod.read_header(path)[0]
    text = raw.rstrip(b"\0").decode("utf-8").strip()
    return ET.fromstring(re.sub(r"^<\?xml[^>]*\?>", "", text).strip())


def _uids(root: ET.Element) -> list[str]:
    return [(a.text or "").strip().strip('"') for a in root.iter("Attribute") if (a.get("Name") or "").endswith("_UID") and (a.text or "").strip()]


def _apply(plan: Plan, out: Path) -> dict[str, bytes]:
    files = {}
    for fp in plan.files:
        dest = out / fp.dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        if fp.content is not None:
            dest.write_bytes(fp.content)
        else:
            apply_copy(fp, dest)
        files[fp.dest] = dest.read_bytes()
    return files


@pytest.mark.parametrize("fmt", ["philips", "isyntax"])
def test_xml_plans_with_other_keys_differ_only_in_keyed_uids(fmt, philips, isyntax, tmp_path):
    path = {"philips": philips, "isyntax": isyntax}[fmt]
    conv = CONVERTERS[fmt]()
    source_uids = _uids(_xml_of(fmt, path))
    assert len(source_uids) == 2
    key_b = _same_length_key(source_uids)
    inv = conv.inspect(path, policy=POLICY)
    a = _apply(conv.plan(inv, ctx(POLICY, KEY_A)), tmp_path / "a")
    b = _apply(conv.plan(inv, ctx(POLICY, key_b)), tmp_path / "b")
    a2 = _apply(conv.plan(inv, ctx(POLICY, KEY_A)), tmp_path / "a2")
    assert a == a2  # a plan leaves the decisions as they were: the next plan renders the same bytes
    ((name, out_a),) = a.items()
    out_b = b[name]
    uids_a = _uids(_xml_of(fmt, tmp_path / "a" / name))
    uids_b = _uids(_xml_of(fmt, tmp_path / "b" / name))
    assert uids_a == [keyed_uid(KEY_A, u) for u in source_uids]
    assert uids_b == [keyed_uid(key_b, u) for u in source_uids]
    assert set(uids_a).isdisjoint(uids_b)
    assert out_a != out_b
    for ua, ub in zip(uids_a, uids_b):
        out_a = out_a.replace(ua.encode(), ub.encode())
    assert out_a == out_b  # every other byte identical


def test_mrxs_plans_with_other_keys_differ_only_in_the_keyed_slide_id(mrxs, tmp_path):
    conv = MrxsConverter()
    inv = conv.inspect(mrxs, policy=POLICY)
    old_id = IniDoc((mrxs.with_suffix("") / "Slidedat.ini").read_bytes(), mrxs).get("GENERAL", "SLIDE_ID")
    assert old_id
    key_b = b"b" * 32
    a = _apply(conv.plan(inv, ctx(POLICY, KEY_A)), tmp_path / "a")
    b = _apply(conv.plan(inv, ctx(POLICY, key_b)), tmp_path / "b")
    a2 = _apply(conv.plan(inv, ctx(POLICY, KEY_A)), tmp_path / "a2")
    assert a == a2  # the plan changed a copy of Slidedat.ini, not the decided one
    id_a, id_b = keyed_slide_id(KEY_A, old_id).encode(), keyed_slide_id(key_b, old_id).encode()
    assert id_a != id_b and len(id_a) == len(id_b) == len(old_id)
    assert a.keys() == b.keys() and len(a) >= 5
    changed = 0
    for name in a:
        assert old_id.encode() not in a[name]
        changed += a[name] != b[name]
        assert a[name].replace(id_a, id_b) == b[name], name  # only the keyed SLIDE_ID differs
    assert changed >= 3  # Slidedat.ini, Index.dat and the Data file headers carry it


# -- the report is the decisions -------------------------------------------------------------


def _report_line(fmt: str, f, d) -> tuple[str, str, str, str]:
    """(kind, name, word, where) of the report line that carries out the field decision ``f``: its own
    ``removal()`` (the action's ``done`` word) but for the cases named here."""
    if fmt == "isyntax" and f.name.startswith("XML markup: "):
        return ("structure", f.name.removeprefix("XML markup: "), f.action.done, f.where)
    if fmt == "philips" and f.where in {i.where for i in d.images if i.action is Action.REMOVE}:
        return ("field", f.name, Action.REMOVE.done, f.where)  # its IFD went, text and all
    if fmt == "mrxs" and f.name.endswith(":text"):
        return ("field", f.name.removesuffix(":text"), Action.ZERO.done, f.where)  # the whole free-text record
    if fmt == "mrxs" and f.name.startswith("preview:"):
        return ("image", "preview", "replaced by a neutral image without metadata", ".mrxs")  # the preview goes whole
    r = f.removal()
    return (r.kind, r.name, r.action, r.where)


@pytest.mark.parametrize("policy", [Policy(), POLICY, Policy(macro="keep", dates="keep")], ids=["default", "blank-year", "keep"])
@pytest.mark.parametrize("fmt", ["philips", "philips_ifd", "isyntax", "mrxs"])
def test_every_decided_field_is_a_report_line(fmt, policy, philips, philips_ifd, isyntax, mrxs):
    path = {"philips": philips, "philips_ifd": philips_ifd, "isyntax": isyntax, "mrxs": mrxs}[fmt]
    fmt = fmt.removesuffix("_ifd")
    conv = CONVERTERS[fmt]()
    d = conv.analyze(path, policy)
    plan = conv.plan(d.inventory(), ctx(policy))
    lines = {(r.kind, r.name, r.action, r.where) for r in plan.removals}
    decided = [f for f in d.fields if f.action is not Action.KEEP]
    assert len(decided) >= 8
    for f in decided:
        assert _report_line(fmt, f, d) in lines, (f.name, f.where, f.action)
    # and the images: removed, blanked or kept as decided
    for img in d.images:
        words = {r.action for r in plan.removals if r.kind == "image" and r.name == img.kind}
        if img.action is Action.REMOVE:
            assert words & {Action.REMOVE.done, "wiped+unlinked", "wiped+removed"}, img
        elif img.action is Action.BLANK:
            assert words & {Action.BLANK.done, "replaced by blank image"}, img


# -- decisions describe the file they were made for ----------------------------------------


def test_plan_refuses_a_slide_that_changed_after_analysis(tmp_path):
    from wsianon.errors import CorruptInput

    isx = make_isyntax(tmp_path / "i.isyntax")
    conv = ISyntaxConverter()
    inv = conv.inspect(isx.path)
    data = isx.path.read_bytes()
    isx.path.write_bytes(b"\n" + data)  # the header one byte longer: the decided header no longer fits the file
    with pytest.raises(CorruptInput, match="changed between inspection and redaction"):
        conv.plan(inv, ctx(Policy()))
    info = make_mrxs(tmp_path / "m")
    conv2 = MrxsConverter()
    inv = conv2.inspect(info.mrxs)
    data_file = sorted(info.folder.glob("Data*.dat"))[-1]
    with open(data_file, "ab") as fh:
        fh.write(b"\0" * 16)
    with pytest.raises(CorruptInput, match="changed between inspection and redaction"):
        conv2.plan(inv, ctx(Policy()))
    with pytest.raises(CorruptInput, match="changed between inspection and redaction"):
        PhilipsConverter().plan(_philips_with_one_ifd_fewer(tmp_path), ctx(Policy()))


def _philips_with_one_ifd_fewer(tmp_path: Path):
    """An inventory of a Philips TIFF with label/macro IFDs, then the file rewritten without them."""
    p = tmp_path / "p.tiff"
    make_philips(p, images_in="ifd")
    inv = PhilipsConverter().inspect(p)
    make_philips(p)  # the same slide with its images in the XML: two IFDs fewer
    return inv
