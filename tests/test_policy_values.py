"""Policy values have one source of truth (wsianon/profiles/policy.py): the CLI's choices and the
Python API's validation derive from the same enums."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from wsianon.cli import app
from wsianon.pipeline.jobs import JobConfig
from wsianon.profiles import policy as pol

OPTIONS = {
    "--label": pol.LabelPolicy,
    "--macro": pol.MacroPolicy,
    "--dates": pol.DatesPolicy,
    "--rename": pol.RenamePolicy,
    "--target": pol.Target,
    "--pseudonym-from": pol.PseudonymFrom,
}


def _run_options() -> dict:
    run = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    return {o: p for p in run.params for o in getattr(p, "opts", [])}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_cli_choices_are_the_policy_values(option):
    param = _run_options()[option]
    assert param.type_descriptor.annotation is OPTIONS[option]  # the CLI's type is the policy's enum
    res = CliRunner().invoke(app, ["run", option, "shred", "x.svs", "-o", "out"])
    assert res.exit_code != 0
    text = " ".join(res.output.split())
    assert all(v in text for v in pol.values(OPTIONS[option])), text


@pytest.mark.parametrize(("field", "enum"), [("label", pol.LabelPolicy), ("macro", pol.MacroPolicy), ("dates", pol.DatesPolicy), ("rename", pol.RenamePolicy)])
def test_policy_refuses_a_value_outside_its_enum_and_names_the_choices(field, enum):
    with pytest.raises(ValueError) as e:
        pol.Policy(**{field: "shred"})
    assert f"--{field}" in str(e.value) and all(v in str(e.value) for v in pol.values(enum))
    for v in pol.values(enum):  # every listed value is accepted, as the plain word and as the member
        assert pol.Policy(**{field: v}) == pol.Policy(**{field: enum(v)})


def test_job_config_refuses_an_unknown_target_or_pseudonym_mode():
    with pytest.raises(ValueError, match="--target must be one of native, dicom"):
        JobConfig(inputs=[Path("a.svs")], target="tiff")
    with pytest.raises(ValueError, match="--pseudonym-from must be one of relpath, content, path"):
        JobConfig(inputs=[Path("a.svs")], pseudonym_from="name")
    assert JobConfig(inputs=[Path("a.svs")], target="dicom").target == pol.Target.dicom


def test_members_serialize_as_their_words():
    import json

    assert json.dumps({"dates": pol.DatesPolicy.year}) == '{"dates": "year"}'
    assert str(pol.Target.native) == "native"


def test_slide_statuses_and_states_are_enums_that_serialize_as_words():
    import json

    from wsianon.pipeline.model import DONE_STATES, STATE_OF_STATUS, Outcome, State, Status

    o = Outcome(input_label="WSI-x", status=Status.FAILED)
    assert json.loads(json.dumps(o.as_dict()))["status"] == "failed"
    assert STATE_OF_STATUS[Status.FAILED] == State.QUARANTINED == "quarantined"
    assert STATE_OF_STATUS["ok"] == "ok"  # plain words from an older manifest still map
    assert set(DONE_STATES) == {"ok", "quarantined", "skipped"}


def test_every_image_kind_a_redactor_can_name_is_an_image_kind():
    import re

    from wsianon.converters.decisions import ImageDecision, ImageKind
    from wsianon.profiles import load

    # the words the rules map associated images to (MRXS records, generic TIFF names, DPUfsImport types)
    words = set(load("mrxs")["associated"].values()) | {"label", "macro", "overview", "other", "unknown", "thumbnail", "map", "preview"}
    for w in words:
        assert ImageDecision(w, "x", True).kind is ImageKind(w)
    pattern = load("generic")["associated_pattern"]
    alternatives = re.search(r"\\b\(([^)]*)\)", pattern)  # (label|macro|overview|slide ?label|barcode)
    assert alternatives is not None
    for alt in alternatives.group(1).split("|"):
        word = alt.replace(" ?", "").lower()
        kind = "label" if word in ("slidelabel", "barcode") else word
        assert ImageKind(kind)
    with pytest.raises(ValueError):  # an unknown kind is refused where the decision is made
        ImageDecision("photo", "x", True)
