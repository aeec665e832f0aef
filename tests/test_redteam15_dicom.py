"""Red team stop 38, DICOM route: values that passed as verified — an unknown code's CodeValue of
any digits, standard attributes written with another VR than the dictionary's (text as FD), a
frame after the last frame of encapsulated Pixel Data, and an identifier of letters and digits
respelled in a kept attribute."""

from __future__ import annotations

from pathlib import Path

import pytest

from pydicom.dataset import Dataset

from wsianon.verify.dicom_attrs import check_dicom_attributes
from wsianon.verify.dicom_text import scan_dicom_text

from .conftest import shared as shared_path
from .test_redteam4_dicom import HD, _read, _run, _source

NAME, MRN, DOB, ACC = "Doe^Jane", "98765432", "19790101", "S19-4711"


def _planted(tmp_path: Path, dcm: Path, edit, name: str) -> Path:
    ds = _read(dcm)
    edit(ds)
    p = tmp_path / "planted" / name / dcm.parent.name / dcm.name
    p.parent.mkdir(parents=True)
    ds.save_as(p)
    return p


# ---------------------------------------------------------------------------
# 3. an unknown code keeps its CodeValue only in its scheme's form


def _birth_date_code(ds: Dataset) -> None:
    c = ds.OpticalPathSequence[0].IlluminationTypeCodeSequence[0]
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = DOB, "DCM", "ANONYMIZED"


def test_unknown_code_form():
    """The shared rule: every SNOMED CT concept pydicom ships has the SCT form (but one pydicom
    typo, 115347700, whose check digit is wrong), DCM's numeric codes theirs; a birth date, an MRN
    and digits of another scheme do not."""
    from pydicom.sr._concepts_dict import concepts

    from wsianon.profiles.dicom import unknown_code_form

    sct = {c for names in concepts["SCT"].values() for c in names}
    assert {c for c in sct if not unknown_code_form("SCT", c)} == {"115347700"}
    dcm = {c for names in concepts["DCM"].values() for c in names if c.isdigit()}
    assert all(unknown_code_form("DCM", c) for c in dcm)
    assert all(unknown_code_form(s, c) for s in ("NCIt", "UMLS") for names in concepts[s].values() for c in names)
    for scheme, value in (("DCM", DOB), ("SCT", DOB), ("SCT", MRN), ("DCM", "4711"), ("NCIt", "C19790101"), ("LN", "123456"), ("99WSIANON", "111744")):
        assert not unknown_code_form(scheme, value), (scheme, value)


def test_unknown_code_with_a_date_for_value_gets_the_dummy(tmp_path, cli):
    """Before: a code the dictionary does not know kept a CodeValue of any 1-18 digits (only its
    meaning became a dummy): a birth date as a DCM Illumination Type code was shared and verified.
    Now the route writes the dummy, and both verifier checks refuse the value in an output."""
    out = tmp_path / "out"
    code, console, slide = _run(cli, _source(tmp_path / "a", HD, _birth_date_code), out)
    assert code == 0 and slide["status"] == "ok", console
    (dcm,) = sorted(out.rglob("*.dcm"))
    assert DOB.encode() not in dcm.read_bytes()
    assert _read(dcm).OpticalPathSequence[0].IlluminationTypeCodeSequence[0].CodeValue == "ANONYMIZED"
    planted = _planted(tmp_path, dcm, _birth_date_code, "code")
    found, _n = check_dicom_attributes([planted])
    assert any("IlluminationTypeCodeSequence/CodeValue" in f for f in found), found
    text, _n, _k = scan_dicom_text([planted])
    assert any("code not in its scheme's dictionary" in f for f in text), text
    assert not any(DOB in f for f in found + text)


# ---------------------------------------------------------------------------
# 1. a standard attribute written with another VR than its dictionary's

FD_TEXT = {
    "ManufacturerModelName": b"Doe^Jane",
    "PositionReferenceIndicator": DOB.encode(),
    "ConvolutionKernel": MRN.encode(),
    "SpatialResolution": ACC.encode(),
}


def _as_fd(values: dict[str, bytes]):
    import struct

    from pydicom.dataelem import DataElement
    from pydicom.datadict import tag_for_keyword

    def edit(ds: Dataset) -> None:
        for kw, raw in values.items():
            tag = tag_for_keyword(kw)
            if tag in ds:
                del ds[tag]
            ds.add(DataElement(tag, "FD", struct.unpack("<d", raw)[0]))

    return edit


def test_vr_allowed():
    from wsianon.profiles.dicom import vr_allowed

    assert vr_allowed(0x00081090, "LO") and vr_allowed(0x00081090, "UN") and not vr_allowed(0x00081090, "FD")
    assert vr_allowed(0x00280106, "US") and vr_allowed(0x00280106, "SS") and vr_allowed(0x00280106, "US or SS")
    assert vr_allowed(0x00080000, "UL") and not vr_allowed(0x00080000, "FD")  # a group length
    assert vr_allowed(0x00091010, "FD") and vr_allowed(0x00021010, "FD")  # private; not in the dictionary
    assert vr_allowed(0x60003000, "OW") and not vr_allowed(0x60003000, "FD")  # a repeating group's entry


def test_text_written_as_fd_is_removed_and_refused(tmp_path, cli):
    """Before: ManufacturerModelName, PositionReferenceIndicator, ConvolutionKernel and
    SpatialResolution written with explicit VR FD (8 bytes of a name, a birth date, an MRN, an
    accession number each) were judged as numbers by every check: the route shared them and
    `wsianon verify` passed the output. Now the route drops such an element, writing it back in
    its dictionary VR where the IOD requires it (ManufacturerModelName Type 1: the dummy;
    PositionReferenceIndicator Type 2: empty), and the header walk refuses it in an output."""
    out = tmp_path / "out"
    code, console, slide = _run(cli, _source(tmp_path / "a", HD, _as_fd(FD_TEXT)), out)
    assert code == 0 and slide["status"] == "ok", (console, slide["verification"])
    (dcm,) = sorted(out.rglob("*.dcm"))
    data = dcm.read_bytes()
    assert not [v for v in FD_TEXT.values() if v in data]
    ds = _read(dcm, pixels=False)
    assert ds["ManufacturerModelName"].VR == "LO" and ds.ManufacturerModelName == "ANONYMIZED"
    assert ds["PositionReferenceIndicator"].VR == "LO" and ds.PositionReferenceIndicator == ""
    assert "ConvolutionKernel" not in ds and "SpatialResolution" not in ds
    assert any("written with a VR" in r["action"] for r in slide["removed"] if r["name"] == "ConvolutionKernel")
    planted = _planted(tmp_path, dcm, _as_fd({"StudyDescription": b"Doe^Jane", "ManufacturerModelName": MRN.encode()}), "fd")
    found, _n = check_dicom_attributes([planted])
    assert any("(0008,1030) StudyDescription written with a VR its dictionary entry does not give it" in f for f in found), found
    code, stdout, _ = cli("verify", str(planted))
    assert code == 1 and "FAIL dicom: closed world" in stdout, stdout
    assert not any(m in stdout + "\n".join(found) for m in (NAME, MRN))


def test_a_number_the_image_needs_written_with_another_vr_is_refused(tmp_path, cli):
    """A Type 1 attribute the image is read by, written with another VR (BitsStored as SS; fuzz
    seed 81's SamplesPerPixel as IS "x"), has no dummy that describes the image: the route
    wrote 0 and the verifier ended in an internal error; now the instance is refused, naming the
    attribute (a keyword), nothing written."""
    from pydicom.dataelem import DataElement

    def edit(ds: Dataset) -> None:
        bits = int(ds.BitsStored)
        del ds[0x00280101]
        ds.add(DataElement(0x00280101, "SS", bits))

    out = tmp_path / "out"
    code, console, slide = _run(cli, _source(tmp_path / "a", HD, edit), out)
    assert code != 0 and slide["status"] == "error", (console, slide)
    assert "BitsStored is written with a VR its dictionary entry does not give it" in slide["error"], slide["error"]
    assert not list(out.rglob("*.dcm"))


def _meta_version_fd(ds: Dataset) -> None:
    import struct

    from pydicom.dataelem import DataElement

    del ds.file_meta[0x00020001]
    ds.file_meta.add(DataElement(0x00020001, "FD", struct.unpack("<d", NAME.encode())[0]))


def test_file_meta_written_with_another_vr(tmp_path, cli):
    """The File Meta the same way: a FileMetaInformationVersion written as FD (8 bytes of a name)
    was copied by the route and ended the verifier with an internal error (TypeError); now the
    route writes it anew (00 01, OB) and the closed world refuses it in an output."""
    out = tmp_path / "out"
    code, console, slide = _run(cli, _source(tmp_path / "a", HD, _meta_version_fd), out)
    assert code == 0 and slide["status"] == "ok", (console, slide["verification"], slide["error"])
    (dcm,) = sorted(out.rglob("*.dcm"))
    meta = _read(dcm, pixels=False).file_meta
    assert meta["FileMetaInformationVersion"].VR == "OB" and meta.FileMetaInformationVersion == b"\0\1"
    found, _n = check_dicom_attributes([_planted(tmp_path, dcm, _meta_version_fd, "meta")])
    assert any("(0002,0001) FileMetaInformationVersion written with a VR" in f for f in found), found
    assert any("FileMetaInformationVersion is not 00 01" in f for f in found), found


# ---------------------------------------------------------------------------
# 2. a fragment after the last frame of encapsulated Pixel Data

WSI2DCM = "dicom/wsi2dcm-cmu-1-small-region"
LEVEL2 = "level-2-frames-0-4.dcm"  # 4 frames


def _label_jpeg(w: int, h: int) -> bytes:
    import io

    from PIL import Image, ImageDraw

    im = Image.new("RGB", (w, h), "white")
    ImageDraw.Draw(im).text((20, 100), f"{NAME} {MRN}", fill="black")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _refragment(ds: Dataset, extra: bool, bot: bool, per_frame: int = 1) -> None:
    from pydicom.encaps import encapsulate, generate_frames

    n = int(ds.NumberOfFrames)
    frames = list(generate_frames(ds.PixelData, number_of_frames=n))
    label = _label_jpeg(int(ds.Columns), int(ds.Rows))
    label += b"\0" * (len(label) % 2)
    if extra and not bot:  # a fifth fragment, read by pydicom as a fifth frame
        frames.append(label)
    data = encapsulate(frames, fragments_per_frame=per_frame, has_bot=bot)
    if extra and bot:  # the Basic Offset Table's 4 frames, the photo a last fragment of the last
        data += b"\xfe\xff\x00\xe0" + len(label).to_bytes(4, "little") + label
    ds.PixelData = data
    ds["PixelData"].VR = "OB"


def _slide(tmp_path: Path, edit) -> Path:
    import shutil

    from .conftest import shared

    folder = tmp_path / "in" / "slide"
    shutil.copytree(shared(WSI2DCM), folder)
    for p in folder.iterdir():
        p.chmod(0o644)
    ds = _read(folder / LEVEL2)
    edit(ds)
    ds.save_as(folder / LEVEL2)
    return folder


@pytest.mark.parametrize("bot", [False, True], ids=["no-offset-table", "basic-offset-table"])
def test_a_fragment_after_the_last_frame_is_refused(tmp_path, cli, bot):
    """Before: a label photo (a valid JPEG) appended as a fifth fragment of the 4-frame level,
    the Basic Offset Table empty, was copied into a verified output: pydicom yields it as a fifth
    frame, no check tied the fragments to NumberOfFrames. Now the route refuses such an input
    (nothing written) and the closed world refuses such an output. With a Basic Offset Table the
    photo is a second codestream in the last frame: quarantined before (dicom: frames, frame
    segments), now refused at the start and by the closed world the same way."""
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "dicom", str(_slide(tmp_path, lambda ds: _refragment(ds, True, bot))), "-o", str(out))
    assert code != 0 and "do not end one codestream a frame" in stdout + stderr, stdout + stderr
    assert not list(out.rglob("*.dcm"))
    clean = tmp_path / "clean"
    code, stdout, stderr = cli("run", "--target", "dicom", str(_slide(tmp_path / "c", lambda ds: None)), "-o", str(clean))
    assert code == 0, stdout + stderr
    (dcm,) = [p for p in clean.rglob("*.dcm") if int(_read(p, pixels=False).get("NumberOfFrames", 1)) == 4]
    planted = _planted(tmp_path, dcm, lambda ds: _refragment(ds, True, bot), "frag")
    found, _n = check_dicom_attributes([planted])
    assert any("do not end one codestream a frame" in f for f in found), found
    code, stdout, _ = cli("verify", str(planted))
    assert code == 1 and "FAIL dicom: closed world" in stdout, stdout


def test_frames_over_several_fragments_without_an_offset_table_still_verify(tmp_path, cli):
    """A frame may span fragments (PS3.5 A.4); without an offset table its codestream's end marks
    where it ends, as pydicom reads it: such a level is shared and verifies."""
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "dicom", str(_slide(tmp_path, lambda ds: _refragment(ds, False, False, 3))), "-o", str(out))
    assert code == 0, stdout + stderr
    code, stdout, _ = cli("verify", str(out))
    assert code == 0, stdout


# ---------------------------------------------------------------------------
# 4. an identifier of letters and digits respelled in kept text


def _respelled(ds: Dataset) -> None:
    ds.AccessionNumber, ds.PatientID = ACC, MRN
    ds.Manufacturer = "Leica S19 4711"
    ds.ManufacturerModelName = "Aperio S194711"
    ds.OpticalPathSequence[0].OpticalPathIdentifier = "S19.4711"


def test_alnum_forms():
    from wsianon.io.scan import Canary, Scanner, alnum_forms

    assert set(alnum_forms(ACC)) == {
        "S194711",
        "S19 4711",
        "S19.4711",
        "S19/4711",
        "S19_4711",
        "S19:4711",
        "S19,4711",
        "S19+4711",
        "S19#4711",
    }  # the last four: round 2
    assert "9876.5432" not in alnum_forms("9876-5432") and "98765432" in alnum_forms("9876-5432")  # no decimal number
    for v in ("S194711", "CMU-1", "Carl Zeiss", "A1-B2", "S19--4711", "Doe^Jane"):  # one group, short, no digit, two separators
        assert alnum_forms(v) == [], v
    sc = Scanner([Canary("AccessionNumber", ACC)])
    for text in (b"Leica S19 4711", b"Aperio s194711", b"S19_4711", b"path S19/4711"):
        assert sc.scan_bytes(text), text
    assert not sc.scan_bytes(b"Leica S19 4712 S19471")


def test_respelled_accession_number_is_scrubbed_and_found(tmp_path, cli):
    """Before: the value scrub and the canary scan searched an identifier of letters and digits
    only as written: AccessionNumber S19-4711 (removed) stayed as "Leica S19 4711" in
    Manufacturer, "Aperio S194711" in ManufacturerModelName and "S19.4711" as the
    OpticalPathIdentifier, verified. Now its other spellings are searched too: the route gives
    those attributes dummies, and `verify --source` finds a respelling planted in the output."""
    src = _source(tmp_path / "a", HD, _respelled)
    out = tmp_path / "out"
    code, console, slide = _run(cli, src, out)
    assert code == 0 and slide["status"] == "ok", (console, slide["verification"])
    (dcm,) = sorted(out.rglob("*.dcm"))
    data = dcm.read_bytes().lower()
    assert not [f for f in (b"s19 4711", b"s194711", b"s19.4711") if f in data]
    ds = _read(dcm, pixels=False)
    assert "4711" not in f"{ds.Manufacturer} {ds.ManufacturerModelName} {ds.OpticalPathSequence[0].get('OpticalPathIdentifier', '')}"

    def plant(d: Dataset) -> None:
        d.Manufacturer = "Leica S19 4711"

    planted = _planted(tmp_path, dcm, plant, "acc")
    code, stdout, _ = cli("verify", str(planted.parent), "--source", str(src))
    assert code == 1 and "AccessionNumber" in stdout, stdout
    assert "4711" not in stdout


def test_ordinary_text_with_numbers_is_not_quarantined(tmp_path, cli):
    """No false positive: removed descriptions of words and numbers and kept text that shares
    words and numbers with them but none of their spellings: shared, the kept text as it was."""

    def edit(ds: Dataset) -> None:
        ds.AccessionNumber = "AB-12"  # short: no other spellings
        ds.StudyDescription = "HE stain slide 2 of 3"
        ds.SeriesDescription = "Level 1 scan 40x"
        ds.Manufacturer = "Leica Biosystems"
        ds.ManufacturerModelName = "Aperio GT 450"
        ds.SoftwareVersions = "1.2.3"

    out = tmp_path / "out"
    code, console, slide = _run(cli, _source(tmp_path / "a", HD, edit), out)
    assert code == 0 and slide["status"] == "ok", (console, slide["verification"])
    ds = _read(sorted(out.rglob("*.dcm"))[0], pixels=False)
    assert (ds.Manufacturer, ds.ManufacturerModelName) == ("Leica Biosystems", "Aperio GT 450")


# ---------------------------------------------------------------------------
# dciodvfy's messages: a character of an invalid value outside <...>


def test_dciodvfy_character_outside_the_brackets_is_dropped(tmp_path):
    """dciodvfy names the character it refuses after the value ("... = <Doe> - Character invalid
    for this VR = 'o' (0x6f)"): the brackets' value was dropped, that character and its code
    reached the report detail. Now every quoted character, its code and a bare value after " = "
    are dropped too; names and the message's words stay."""
    import shutil
    import subprocess

    from wsianon.verify.dicom.validator import _parse_dciodvfy

    line = b"Error - </ImageType(0008,0008)[4]> - Value invalid for this VR [CS] = <Doe> - Character invalid for this VR = 'o' (0x6f)\n"
    # (since red team stop 39 a message ends at its first value, its tail dropped with it)
    assert _parse_dciodvfy(line) == ["Error - </ImageType(0008,0008)> - Value invalid for this VR [CS] = <>"]
    bare = b"Error - </PixelSpacing(0028,0030)> - PixelSpacing = 98765432 versus ImagerPixelSpacing = 19790101\n"
    assert not any(v in e for e in _parse_dciodvfy(bare) for v in (MRN, DOB))
    assert _parse_dciodvfy(b"Error - </Rows(0028,0010)> - Value is zero\n") == ["Error - </Rows(0028,0010)> - Value is zero"]
    length = b"Error - </PixelData(7fe0,0010)> - PixelData has incorrect value length = <19790101> - expected 98765432 dec\n"
    assert _parse_dciodvfy(length) == ["Error - </PixelData(7fe0,0010)> - PixelData has incorrect value length = <>"]
    if shutil.which("dciodvfy") is None:
        return
    ds = _read(shared_path(HD))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "Quentin"]
    p = tmp_path / "bad.dcm"
    ds.save_as(p)
    r = subprocess.run(["dciodvfy", "-new", str(p)], capture_output=True)
    assert b"'Q'" in r.stdout + r.stderr or b"'u'" in r.stdout + r.stderr  # dciodvfy prints the characters
    errs = _parse_dciodvfy(r.stdout + r.stderr)
    assert errs and not any("'" + c + "'" in e or f"0x{ord(c):02x}" in e for e in errs for c in "Quentin")
