"""Red team stop 39, DICOM side: a name in characters no token rule reads (GB18030 symbols whose
trail bytes spell it, invisible Unicode TAG characters, combining marks), a value reaching the
report through a dciodvfy message (everything after a value's first '>'), and ``wsianon verify``
trusting the Retain options an output claims for itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from wsianon.profiles.dicom import DicomProfile
from wsianon.verify.dicom_attrs import check_dicom_attributes
from wsianon.verify.dicom_text import scan_dicom_text

from .conftest import shared
from .test_redteam4_dicom import HD, _read, _run, _source

NAME, MRN = b"Doe^Jane", b"98765432"


def _gb18030(text: bytes) -> bytes:
    """GB18030 reads 0xA8 + an ASCII byte as one symbol: every second byte spells ``text``."""
    return b"".join(b"\xa8" + bytes([c]) for c in text)


def _tags(text: str) -> str:
    """Unicode TAG characters (U+E0000 + ASCII): invisible, no token."""
    return "".join(chr(0xE0000 + ord(c)) for c in text)


def _gb_manufacturer(ds: Dataset) -> None:
    ds.SpecificCharacterSet = "GB18030"
    value = b"Leica " + _gb18030(NAME + b"^" + MRN)
    ds["Manufacturer"] = DataElement(0x00080070, "LO", value + b" " * (len(value) % 2))


def _tag_names(ds: Dataset) -> None:
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.Manufacturer = "Leica" + _tags("Doe^Jane S19")
    ds.ManufacturerModelName = "Aperio" + _tags("98765432")


def _marks(ds: Dataset) -> None:
    """Combining marks after "Leica": the tokenizer read them as separators (the word Leica)."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.Manufacturer = "Leica" + "".join(chr(0x300 + ord(c) % 0x70) for c in "Doe^Jane")


def _retained_tags(ds: Dataset) -> None:
    """A value a Retain option keeps (not judged by the vocabulary) is judged by the alphabet."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.DeviceSerialNumber = "SN123" + _tags("Doe^Jane")


def _all_bytes(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file())


# ---------------------------------------------------------------------------
# 1. the safe alphabet of kept text


def test_the_safe_alphabet():
    from wsianon.profiles.dicom import unsafe_text

    for bad in (
        "Leica" + _tags("Doe"),  # format characters (Cf)
        "Leica \u2015\u256b\u2561",  # symbols GB18030 decodes 0xA8 pairs to
        "Leica \ufffd",  # bytes the declared character set does not decode
        "Leica \ue000",  # private use
        "Leica \U0005cb1a",  # unassigned
        "Leica \x85",  # a C1 control
        "Leica \x1b$B",  # an escape sequence
        "Leica \u200b",  # zero width space (Cf)
    ):
        assert unsafe_text(bad), ascii(bad)
    for good in ("Leica Aperio GT 450", "MÜLLER", "山田\u3000太郎", "0.25 µm", "20×", "37 °C", "Olympus®", "line\r\nbreak\tTAB", "é", "e\u0301"):
        assert not unsafe_text(good), ascii(good)


@pytest.mark.parametrize("edit", [_gb_manufacturer, _tag_names], ids=["GB18030 symbols", "Unicode TAG characters"])
def test_a_name_in_unread_characters_gets_the_dummy(tmp_path, cli, edit):
    """Before: GB18030 pairs (0xA8, letter) after "Leica", or TAG characters after "Leica" and
    "Aperio", were kept and verified 21/21 (they make no token). Now the route gives the kept
    text its dummy, and the output verifies."""
    src = _source(tmp_path, HD, edit)
    out = tmp_path / "out"
    code, console, slide = _run(cli, src, out)
    assert code == 0 and slide["status"] == "ok", (console, slide["verification"])
    data = _all_bytes(out)
    assert _gb18030(NAME) not in data
    assert not any(t.encode() in data for t in (_tags("Doe"), _tags("9876")))
    (dcm,) = sorted(out.rglob("*.dcm"))
    assert "Leica" not in str(_read(dcm).Manufacturer)


@pytest.mark.parametrize(
    "edit",
    [_gb_manufacturer, _tag_names, _marks, _retained_tags],
    ids=["GB18030 symbols", "Unicode TAG characters", "combining marks", "retained value"],
)
def test_verify_refuses_a_name_in_unread_characters(tmp_path, cli, edit):
    """Planted into a clean output (another tool's, or edited after run): a finding of the text
    check (the closed world too where the attribute's kept text is judged there)."""
    out = tmp_path / "out"
    code, console, _slide = _run(cli, shared(HD), out)
    assert code == 0, console
    (dcm,) = sorted(out.rglob("*.dcm"))
    ds = _read(dcm)
    edit(ds)
    planted = tmp_path / "planted" / "slide" / dcm.name
    planted.parent.mkdir(parents=True)
    ds.save_as(planted)
    retain = DicomProfile(frozenset({"retain-device-identity"}))
    found, _n, _k = scan_dicom_text([planted], profile=retain)
    assert found and all("(0008,0070)" in f or "(0008,1090)" in f or "(0018,1000)" in f for f in found), found
    code, stdout, _ = cli("verify", "--profile", "retain-device-identity", str(planted))
    assert code == 1 and "NOT CLEAN" in stdout, stdout


# ---------------------------------------------------------------------------
# 2. dciodvfy's messages: nothing they quote from the file


@pytest.mark.parametrize(
    "value",
    ["AUTO>Doe^Jane 55501234>X", "A<Doe^Jane>55501234", "A'Doe^Jane' 55501234", 'A"Doe" - Jane 55501234', "A - Doe^Jane = <55501234>"],
)
def test_a_dciodvfy_message_keeps_no_part_of_a_value(value):
    """Before: ``<[^>]*>`` blanked a value only up to its first '>', and the rest of the value
    reached OUT/wsianon-report.json and .html. Now a message ends at its first value."""
    from wsianon.verify.dicom.validator import _parse_dciodvfy

    lines = [
        f"Error - </FocusMethod(0048,0011)[1]> - Value invalid for this VR [CS] = <{value}> - Length invalid for this VR = <24> - expected <= 16",
        f"Error - </FocusMethod(0048,0011)[1]> - Value invalid for this VR [CS] = <{value}> - Character invalid for this VR = '>' (0x3e)",
        f"Error - </FocusMethod(0048,0011)> - Unrecognized enumerated value = <{value}>",
        f"Error - Unrecognized enumerated value <{value}> for value 1 of attribute <Focus Method>",
        f'Error - </(0009,1001,"{value}")> - Unrecognized tag',
    ]
    errs = _parse_dciodvfy("\n".join(lines).encode())
    assert len(errs) == len(lines)
    for e in errs:
        assert not any(w in e for w in ("Doe", "Jane", "5550", "AUTO")), e
    assert errs[0] == "Error - </FocusMethod(0048,0011)> - Value invalid for this VR [CS] = <>"
    assert errs[2] == "Error - </FocusMethod(0048,0011)> - Unrecognized enumerated value = <>"


def test_a_value_in_a_dciodvfy_message_stays_out_of_the_report(tmp_path, cli):
    """The red team's source: a kept CS value with '>' and a private OB of undefined length that
    stops dciodvfy's read of the source (so its errors are no baseline). The slide fails; its
    report names the attribute, never the value."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed")
    import struct

    ds = _read(shared(HD))
    ds.add_new(0x00090010, "LO", "ACME")
    ds.add_new(0x00091001, "OB", b"PLACEHOLDER!")
    ds["FocusMethod"] = DataElement(0x00480011, "CS", b"AUTO>Doe^Jane 55501234>X")
    src = tmp_path / "in" / "a.dcm"
    src.parent.mkdir()
    ds.save_as(src, enforce_file_format=False)
    b = bytearray(src.read_bytes())
    old = b"\x09\x00\x01\x10OB\x00\x00" + struct.pack("<I", 12) + b"PLACEHOLDER!"
    i = b.find(old)
    b[i : i + len(old)] = b"\x09\x00\x01\x10OB\x00\x00\xff\xff\xff\xffABCDEFGHIJKL\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    src.write_bytes(bytes(b))
    out = tmp_path / "out"
    code, console, slide = _run(cli, src, out)
    chk = next(c for c in slide["verification"]["checks"] if c["check"] == "dicom: dciodvfy")
    assert code == 1 and not chk["ok"] and "FocusMethod" in chk["detail"], chk
    for name in ("wsianon-report.json", "wsianon-report.html"):
        data = (out / name).read_bytes()
        assert b"55501234" not in data and b"Doe^Jane" not in data, name
    assert "55501234" not in console


# ---------------------------------------------------------------------------
# 3. an output's claim of a Retain option widens nothing


def _code(value: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, "DCM", meaning
    return c


def _claims(tmp_path: Path, cli, name: str, edit) -> Path:
    out = tmp_path / "out"
    if not out.exists():
        code, console, _slide = _run(cli, shared(HD), out)
        assert code == 0, console
    (dcm,) = sorted(out.rglob("*.dcm"))
    ds = _read(dcm)
    edit(ds)
    p = tmp_path / "claims" / name / dcm.name
    p.parent.mkdir(parents=True)
    ds.save_as(p, enforce_file_format=True)
    return p


def _device_and_institution(ds: Dataset) -> None:
    ds.DeidentificationMethodCodeSequence.append(_code("113109", "Retain Device Identity Option"))
    ds.DeidentificationMethodCodeSequence.append(_code("113112", "Retain Institution Identity Option"))
    ds.DeviceSerialNumber = "Doe^Jane 98765432"
    ds.StationName = "DOE JANE 790101"
    ds.InstitutionName = "Doe^Jane MRN 98765432"
    ds.InstitutionalDepartmentName = "Case S19-4711"


def _uids(ds: Dataset) -> None:
    ds.DeidentificationMethodCodeSequence.append(_code("113110", "Retain UIDs Option"))
    ds.SpecimenDescriptionSequence[0].SpecimenUID = "1.2.276.0.98765432.19790101"


@pytest.mark.parametrize("edit", [_device_and_institution, _uids], ids=["device and institution", "uids"])
def test_verify_does_not_take_a_claimed_retain_option(tmp_path, cli, edit):
    """Before: Retain codes appended to a clean output's DeidentificationMethodCodeSequence made
    ``verify`` exit 0 CLEAN ("7 kept by a recorded Retain option"). Now the options come from
    the user (``verify --profile``, as given to run): the attributes are judged, and the claim of
    an option not given is a finding."""
    p = _claims(tmp_path, cli, edit.__name__, edit)
    code, stdout, _ = cli("verify", str(p))
    assert code == 1 and "NOT CLEAN" in stdout and "kept by" not in stdout, stdout
    assert "an option this verification was not given" in stdout, stdout
    assert check_dicom_attributes([p])[0], "the closed world judges the attributes"
    found = scan_dicom_text([p])[0]
    assert any("DeidentificationMethodCodeSequence" in f for f in found), found


def test_a_claim_alone_is_a_finding_and_the_flag_accepts_a_real_retain_output(tmp_path, cli):
    """A claimed option with nothing kept under it is still a claim this verification was not
    given; an output ``run --profile retain-device-identity`` made verifies with the same flag."""
    p = _claims(tmp_path, cli, "claim", lambda ds: ds.DeidentificationMethodCodeSequence.append(_code("113109", "Retain Device Identity Option")))
    code, stdout, _ = cli("verify", str(p))
    assert code == 1 and "retain-device-identity, an option this verification was not given" in stdout, stdout
    code, stdout, _ = cli("verify", "--profile", "retain-device-identity", str(p))
    assert "an option this verification was not given" not in stdout, stdout
    out = tmp_path / "retained"
    code, _o, _e = cli("run", "--target", "dicom", "--profile", "retain-device-identity", str(shared("dicom/openslide-python_boxes_0.dcm")), "-o", str(out))
    assert code == 0
    (dcm,) = sorted(out.rglob("*.dcm"))[:1]
    assert _read(dcm).DeviceSerialNumber == "CPAPERIOCS"
    code, stdout, _ = cli("verify", "--profile", "retain-device-identity", str(dcm))
    assert "dicom: text vocabulary" in stdout and "an option this verification was not given" not in stdout, stdout
    code, stdout, _ = cli("verify", str(dcm))
    assert code == 1 and "DeviceSerialNumber" in stdout, stdout
    report = json.loads((out / "wsianon-report.json").read_text())
    assert report["slides"][0]["status"] == "ok"  # run's own verification knows its policy


def test_run_keeps_a_retained_value_only_in_the_safe_alphabet(tmp_path, cli):
    """The route: a value a Retain option keeps (DeviceSerialNumber under Retain Device Identity)
    with TAG characters after it is replaced like a removed value, and the slide verifies."""

    src = _source(tmp_path, HD, _retained_tags)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "dicom", "--profile", "retain-device-identity", str(src), "-o", str(out))
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert code == 0 and slide["status"] == "ok", (stdout + stderr, slide["verification"])
    (dcm,) = sorted(out.rglob("*.dcm"))
    assert "SN123" not in str(_read(dcm).get("DeviceSerialNumber", "")), "the value went, not only the hidden part"
    assert _tags("Doe").encode() not in _all_bytes(out)
