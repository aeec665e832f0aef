"""The DICOM profile decides with the one Action vocabulary.

Annex E's letters (K X Z D C U) are the standard's notation: they stay in the tables
(``wsianon/profiles/data/*.json``) and become :class:`~wsianon.profiles.actions.Action` members once,
as the rows load.  Everything past the loader -- engine, inventory, verifiers -- compares Actions.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from wsianon.converters.dicom import engine as dicom_engine
from wsianon.converters.dicom.engine import Engine, Identity
from wsianon.profiles import dicom as prof
from wsianon.profiles.actions import Action

from .conftest import REPO

LETTERS = frozenset("KXZDUC")
# where a letter constant is allowed, and why
ALLOWED = {
    ("wsianon/profiles/actions.py", None): "the vocabulary itself: Annex E letter <-> Action",
    ("wsianon/pipeline/deliver.py", "K"): "byte-size suffixes K/M/G/T of --max-size style values, not Annex E",
}
# str methods whose letter arguments are text, not actions (hex tag patterns: "0008XXXX".replace("X", "x"))
TEXT_METHODS = frozenset({"replace", "split", "rsplit", "strip", "lstrip", "rstrip", "startswith", "endswith", "find", "index", "count", "upper", "lower"})


def letter_uses(source: str) -> list[tuple[int, str, str]]:
    """(line, letter, context) of every Annex E letter constant used as a decision in ``source``:
    compared (==, !=, in, is), a dict key or value, assigned, returned, passed to a call, or an item
    of a tuple/list/set that is compared against or iterated.  Letters given to str methods
    (``.replace("X", "x")``) are text and not reported."""
    tree = ast.parse(source)
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in LETTERS):
            continue
        parent = parents.get(node)
        # a letter inside a literal collection: judge the collection's use
        holder: ast.AST = node
        while isinstance(parent, (ast.Tuple, ast.List, ast.Set)):
            holder, parent = parent, parents.get(parent)
        if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute) and parent.func.attr in TEXT_METHODS and holder is not parent.func:
            continue
        if isinstance(parent, ast.Attribute) and parent.attr in TEXT_METHODS:
            continue  # "X".upper()
        if isinstance(parent, ast.JoinedStr) or isinstance(parent, ast.FormattedValue):
            continue
        if isinstance(parent, ast.Expr):
            continue  # a bare string statement
        found.append((node.lineno, node.value, type(parent).__name__))
    return found


def _offenders() -> list[str]:
    out = []
    for py in sorted((REPO / "wsianon").rglob("*.py")):
        rel = py.relative_to(REPO).as_posix()
        if (rel, None) in ALLOWED:
            continue
        for line, letter, ctx in letter_uses(py.read_text()):
            if (rel, letter) not in ALLOWED:
                out.append(f"{rel}:{line}: {letter!r} ({ctx})")
    return out


@pytest.mark.parametrize(
    "snippet",
    [
        'if action == "X":\n    pass',
        'ok = action != "K"',
        'ok = action in ("U", "Z")',
        'WORD = {"X": "removed"}',
        'PREC = {k: 0 for k in ("K", "C")}',
        'TYPE = {"1": "D"}',
        'def f():\n    return "X"',
        'action = "Z"',
        'engine._log(name, "X")',
    ],
)
def test_the_ast_check_catches_letters_used_as_actions(snippet):
    assert letter_uses(snippet), snippet


def test_the_ast_check_leaves_text_alone():
    assert letter_uses('tags = {k: v.upper().replace("X", "x") for k, v in rows}\nname = f"{a}X"\n"""X"""') == []


def test_no_annex_e_letter_outside_the_vocabulary():
    """Past the loader nothing decides with a letter: every comparison is with an Action."""
    offenders = _offenders()
    assert not offenders, "Annex E letters used as actions (compare with Action members):\n" + "\n".join(offenders)


def test_the_allowlist_is_still_needed():
    """Each allowed (file, letter) still occurs: a stale exception would hide a new use."""
    for (rel, letter), _why in ALLOWED.items():
        uses = letter_uses((REPO / rel).read_text())
        assert any(letter is None or u[1] == letter for u in uses), (rel, letter)


# ---------------------------------------------------------------------------
# the loaded profile


def _table_rows() -> list[tuple[str, dict]]:
    """(tag or pattern, row) of every row of the tables, as the files write them."""
    table = json.loads((REPO / "wsianon" / "profiles" / "data" / "dicom_annex_e.json").read_text())
    iod = json.loads((REPO / "wsianon" / "profiles" / "data" / "dicom_wsi_iod.json").read_text())
    rows = [(r["tag"], r) for r in table["exact"]] + [(r["pattern"], r) for r in table["patterns"]]
    return rows + [("private", table["private"])] + list(iod["rules"].items())


def _letters(code: prof.Code) -> str:
    return code.dicom_code if isinstance(code, Action) else "/".join(a.dicom_code for a in code)


def test_every_loaded_code_is_an_action():
    rules = prof.rules()
    assert len(rules) == len(_table_rows()) > 600
    for rule in rules:
        parts = (rule.basic,) if isinstance(rule.basic, Action) else rule.basic
        assert parts and all(isinstance(a, Action) for a in parts), rule
        assert all(isinstance(a, Action) for a in rule.options.values()), rule


def test_loading_is_faithful_to_the_tables_letters():
    """Every row's letters, read back from its Actions, are the table's (``*`` aside)."""
    by_tag = {r.tag: r for r in prof.rules()}
    rows = _table_rows()
    assert len(by_tag) == len(rows)
    for tag, row in rows:
        rule = by_tag[tag]
        assert _letters(rule.basic) == row["basic"].replace("*", ""), tag
        assert {o: a.dicom_code for o, a in rule.options.items()} == {o: c for o, c in row["options"].items() if c}, tag
    # the compound codes load as their alternatives, in the table's order
    assert prof.parse_code("X/Z/D") == (Action.REMOVE, Action.BLANK, Action.DUMMY)
    assert prof.parse_code("X/Z/U*") == (Action.REMOVE, Action.BLANK, Action.REPLACE)
    assert prof.parse_code("U") is Action.REPLACE


def test_an_unknown_letter_is_refused_when_loaded():
    with pytest.raises(ValueError):
        prof.parse_code("X/Q")
    with pytest.raises(ValueError, match="00181234.*W"):
        prof._rule("00181234", {"name": "Made Up", "basic": "X", "options": {"retain-uids": "W"}})


def _letter_resolution(code: str, type_: str | None) -> str:
    """The resolution as it was written with letters (before the Actions): the reference."""
    if "/" not in code:
        return code
    by_type = {"1": "D", "1C": "D", "2": "Z", "2C": "Z", "3": "X"}.get(type_ or "3", "X")
    parts = code.replace("*", "").split("/")
    if by_type in parts:
        return by_type
    if by_type == "D":
        for alt in ("U", "Z"):
            if alt in parts:
                return alt
    if by_type == "Z" and "Z" not in parts:
        return "D" if "D" in parts else ("X" if "X" in parts else parts[-1])
    return "X" if "X" in parts else parts[0]


def test_compound_resolution_is_the_letters_resolution():
    codes = {r["basic"] for _t, r in _table_rows()} | {"X/Z/D", "Z/D", "X/D", "X/Z", "X/Z/U*", "U/Z", "Z/U", "D/X"}
    assert {"X/Z/D", "Z/D", "X/D", "X/Z", "X/Z/U*"} <= codes
    for code in sorted(codes):
        for type_ in (None, "1", "1C", "2", "2C", "3", "odd"):
            got = prof.resolve_compound(prof.parse_code(code), type_)
            assert isinstance(got, Action)
            assert got is Action(_letter_resolution(code, type_)), (code, type_)


def _act(profile: prof.DicomProfile, kw: str, path: tuple[str, ...] = (), vr: str = ""):
    return profile.action(tag_for_keyword(kw), path, kw, vr)


def test_profile_action_returns_actions():
    default = prof.DicomProfile()
    basic = prof.DicomProfile(frozenset())
    # a type-1 X/Z/D compound resolves to a dummy
    action, rule = _act(default, "AcquisitionDateTime")
    assert rule is not None and rule.basic == (Action.REMOVE, Action.BLANK, Action.DUMMY)
    assert action is Action.DUMMY
    # a plain X removes
    action, rule = _act(basic, "SeriesDescription")
    assert rule is not None and rule.basic is Action.REMOVE and action is Action.REMOVE
    action, rule = _act(default, "OtherPatientIDsSequence")
    assert rule is not None and rule.basic is Action.REMOVE and not rule.options and action is Action.REMOVE
    # a retain option keeps what the Basic Profile would change
    assert _act(default, "DeviceSerialNumber")[0] is Action.DUMMY
    assert _act(prof.DicomProfile(frozenset({"retain-device-identity"})), "DeviceSerialNumber")[0] is Action.KEEP
    assert _act(prof.DicomProfile(frozenset({"retain-uids"})), "SeriesInstanceUID")[0] is Action.KEEP
    assert _act(default, "SeriesInstanceUID")[0] is Action.REPLACE
    # retain wins over clean when both options name the attribute
    both = prof.DicomProfile(frozenset({"retain-full-dates", "clean-descriptors"}))
    assert _act(both, "ContentDate")[0] is Action.KEEP
    # wsianon's own row (Software Versions): resolves like an Annex E row
    assert _act(default, "SoftwareVersions")[0] is Action.DUMMY
    assert _act(prof.DicomProfile(frozenset({"retain-device-identity"})), "SoftwareVersions")[0] is Action.KEEP
    # private attributes go, whatever the options
    action, rule = default.action(0x00091010, (), "", "LO")
    assert action is Action.REMOVE and rule is not None and rule.tag == "private"
    # an attribute the table does not list is kept, a free-text one not known safe is not
    assert _act(default, "Manufacturer", vr="LO") == (Action.KEEP, None)
    assert _act(default, "Rows") == (Action.KEEP, None)
    assert _act(default, "ContentLabel", vr="CS") == (Action.KEEP, None)
    assert _act(default, "PatientSpeciesDescription", vr="LO") == (Action.DUMMY, None)  # Type 1C
    assert _act(default, "PatientBreedDescription", vr="LO") == (Action.BLANK, None)  # Type 2C
    assert _act(default, "SOPAuthorizationComment", vr="LT") == (Action.REMOVE, None)  # Type 3


def test_action_by_type_is_the_x_z_d_compound():
    for type_ in (None, "1", "1C", "2", "2C", "3"):
        assert prof.action_by_type(type_) is prof.resolve_compound(prof.parse_code("X/Z/D"), type_)


# ---------------------------------------------------------------------------
# report words come from the vocabulary


def test_engine_report_words_are_the_actions_words():
    """What the engine logs: Action.done for the profile's decisions, its own reasons otherwise."""
    ds = Dataset()
    ds.StationName = "SCANNER-ROOM-7"  # X/Z/D, Type 3: removed
    ds.BarcodeValue = "ABC123"  # X/Z, Type 2: blanked
    ds.ContainerIdentifier = "S-1"  # Type 1: dummy
    ds.StudyInstanceUID = "1.2.3.4"  # U: replaced
    ds.add_new(0x00091010, "LO", "private value")  # private: removed
    ds.KVP = "120"  # not in the VL WSI IOD
    eng = Engine(prof.DicomProfile(), b"k" * 32, Identity(slide="S", patient="P"))
    eng._walk(ds, ())
    words = {r.name: r.action for r in eng.removals.values()}
    assert words["StationName"] == Action.REMOVE.done == "removed"
    assert words["BarcodeValue"] == Action.BLANK.done
    assert words["ContainerIdentifier"] == Action.DUMMY.done
    assert words["StudyInstanceUID"] == Action.REPLACE.done
    assert words["private tags"] == "removed"
    assert words["KVP"] == dicom_engine.NOT_IN_IOD
    assert "StationName" not in ds and ds.BarcodeValue == "" and str(ds.StudyInstanceUID).startswith("2.25.")


def test_no_translation_dict_left_in_the_dicom_engine():
    src = Path(dicom_engine.__file__).read_text()
    for gone in ("ACTION_WORD", "SCRUB_WORD"):
        assert gone not in src
