"""Red team, round 10: the identifier planted as a NAME (a key, an element, an attribute, a
section, a file name), where a tool tends to copy it: into the output, the report, the record,
the certificate, the job manifest and the console.

Leaks found (each test below failed before its fix):

1. A number in a name.  The report (``reportnames.safe_name``), ``inspect`` and the converters'
   names (``profiles/names.py``) showed a name's numbers as structure, so an Aperio key
   ``S19-4711`` / ``MRN 12345678`` / ``19790101`` was printed by ``inspect`` and written to
   wsianon-report.json/.html, the record and the job manifest.  Now a run of 4 or more digits in
   a name is withheld (indices are shorter: FILE_0, LEVEL_12; our own "tag 55000" is kept).
2. The same number in an XML name of an output: ``<iScan S19-4711="">`` (BIF XMP), a Philips
   ``<Attribute Name="PIM_DP_4711">``, ``<S19-4711>`` or ``S19-4711="1"`` in the Philips XML was
   kept with its value blanked, and the slide verified (the vocabulary passes numbers).  Now the
   verifier's text-value check fails a TIFF text value naming an XML element or attribute, a
   Philips Name or an Aperio key with a run of 4 or more digits ("name holding a number").
3. Names that are not vocabulary were kept with an empty value, so the slide was quarantined
   (fail-closed, but a clean slide lost): an Aperio key ``Doe^Jane`` (also with markup or control
   characters), a BIF XMP attribute or element ``Doe_Jane``, a Philips Attribute
   ``PIM_DP_DOE_JANE`` / ``DICOM_DOE_JANE``, an XML attribute or element of a name outside the
   schema.  Now the redactors take such a key, attribute or element out with its value (Philips
   XML: the markup closed world iSyntax already had) and the slide is shared.

Places tried and safe before this round are kept below as regression cases.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tifffile

from wsianon.profiles.names import shown
from wsianon.verify.reportnames import safe_name
from wsianon.verify.vocabulary import long_number_names

from .fixtures.helpers import planted_aperio_copy, planted_dicom_copy, plain_svs as _svs, run_keyed as _run

# what must appear nowhere in OUT, on the console or in the manifest for the names planted here
NEEDLES = [b"Jane", b"JANE", b"4711", b"12345678", b"19790101"]


# a needle of digits counts where no hex digit or dot is beside it: the record's SHA-256 values
# and timings hold "4711" by chance (about one MRXS run in a hundred failed on a digest)
_NEEDLE_RX = re.compile(b"|".join(re.escape(n) if not n.isdigit() else rb"(?<![0-9A-Fa-f.])" + n + rb"(?![0-9A-Fa-f])" for n in NEEDLES))


def _leaks(out: Path, console: str) -> list[str]:
    """Files of OUT (outputs, report, record, certificate), the manifest beside it and the console
    that hold a planted name."""
    files = [p for p in out.rglob("*") if p.is_file()] + [p for p in out.parent.glob(out.name + ".wsianon-*.sqlite")]
    found = [str(p.relative_to(out.parent)) for p in files if _NEEDLE_RX.search(p.read_bytes())]
    return found + (["console"] if _NEEDLE_RX.search(console.encode()) else [])


# -- 1. numbers in names: report, inspect, converters -----------------------------------------------


def test_a_long_number_in_a_name_is_withheld_in_the_report():
    # "19", "4711": digit runs holding 4 or more digits together (stop 38): each withheld
    assert safe_name("ImageDescription:S19-4711") == "ImageDescription:S[withheld]-[withheld]"
    assert safe_name("ImageDescription:MRN 12345678") == "ImageDescription:[withheld] [withheld]"
    assert safe_name("ImageDescription:19790101") == "ImageDescription:[withheld]"
    # structure stays: indices, our own "tag N" (a 16-bit TIFF tag number)
    for name in ("tag 55000", "tag 65449 PropertyMap:Objective.Lens.Magnificant", "IFD 3", "Slidedat.ini:FILE_0", "LAYER_0_LEVEL_12_SECTION"):
        assert safe_name(name) == name, name
    assert "4711" not in safe_name("tag 65449 PropertyMap:S19-4711")
    assert not shown("mrxs", "S19-4711") and not shown("mrxs", "19790101") and not shown("mrxs", "Data0000")
    assert shown("mrxs", "NONHIER_12_VAL_3") and shown("mrxs", "FILE_0")


KEYS = {"Doe^Jane": "1", "S19-4711": "x", "MRN 12345678": "1", "19790101": "1", "<b>Doe Jane</b>": "1", "Do\x01e^Ja\x01ne": "1"}


def test_aperio_key_names_are_taken_out_and_never_reported(cli, tmp_path):
    """Before: exit 1 (the keys kept as "key = ", quarantined by the vocabulary check) and the
    report, the record and the manifest named "S19-4711", "12345678", "19790101"."""
    src = _svs(tmp_path, **KEYS)
    assert b"S19-4711" in src.read_bytes()
    code, console, out = _run(cli, tmp_path, src)
    assert code == 0, console
    (svs,) = sorted(out.rglob("*.svs"))
    desc = tifffile.TiffFile(svs).pages[0].description
    assert not [k for k in KEYS if k in desc], desc
    assert _leaks(out, console) == []
    slide = json.loads((out / "wsianon-report.json").read_text())["slides"][0]
    removed = [r["name"] for r in slide["removed"] if r["action"] == "removed" and r["name"].startswith("ImageDescription:")]
    assert len(removed) >= len(KEYS), removed  # reported, by a withheld name


def test_inspect_withholds_numbers_in_key_names(cli, tmp_path):
    code, stdout, stderr = cli("inspect", str(_svs(tmp_path, **KEYS)))
    assert code == 0
    assert _leaks(tmp_path / "none", stdout + stderr) == [], stdout


# -- 2. the verifier: a number in a name of another tool's output -----------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '<iScan S19-4711="" BaseName="">',
        '<DataObject ObjectType="DPUfsImport"><Attribute Name="PIM_DP_4711" Group="0x301D">1</Attribute>',
        "<S19-4711>1</S19-4711>",
        "Aperio Image Library v12.0.15\r\n512x512 (256x256) JPEG/RGB Q=70|AppMag = 20|19790101 = |MPP = 0.499",
    ],
)
def test_names_holding_a_long_number_are_found(text):
    assert long_number_names(text)


@pytest.mark.parametrize(
    "text",
    [
        "Aperio Image Library v12.0.15\r\n46000x32914 [0,100 46000x32714] (256x256) JPEG/RGB Q=30|AppMag = 20|MPP = 0.499|Date = 12/29/09",
        '<?xml version="1.0"?><scn xmlns="http://www.leica-microsystems.com/scn/2010/10/01"><dimension sizeX="46000" r="0" ifd="12"/></scn>',
        '<iScan BuildVersion="3.3.1.1" Magnification="40"><AOI0 Left="10"/></iScan>',
        '<Attribute Name="DICOM_PIXEL_SPACING" Group="0x0028" Element="0x0030">&quot;0.00025&quot;</Attribute>',
    ],
)
def test_real_names_and_numbers_in_values_pass(text):
    assert long_number_names(text) == []


@pytest.mark.parametrize("key", ["S19-4711", "19790101"])
def test_verify_refuses_a_number_in_a_key_name_of_another_tools_output(cli, tmp_path, key):
    """Before: exit 0 — "|S19-4711 = |" (an empty value under a key that is a case number) passed
    the Aperio profile (no value) and the vocabulary (numbers are structure)."""
    code, console, out = _run(cli, tmp_path, _svs(tmp_path))
    assert code == 0, console
    planted = planted_aperio_copy(out, tmp_path, f"|{key} = ")
    code, stdout, _ = cli("verify", str(planted))
    assert code == 1 and "vocabulary" in stdout and key not in stdout, stdout


# -- 2/3. XML names in Philips TIFF and BIF ---------------------------------------------------------

_ATTR = '<Attribute Name="{}" Group="0x301D" Element="0x1001" PMSVR="IString">1</Attribute>'
_ROOT = '<DataObject ObjectType="DPUfsImport">'
PHILIPS = {
    "Attribute Name with a case number": lambda s: s.replace(_ROOT, _ROOT + _ATTR.format("PIM_DP_4711")),
    "Attribute Name with a name (PIM_DP)": lambda s: s.replace(_ROOT, _ROOT + _ATTR.format("PIM_DP_DOE_JANE")),
    "Attribute Name with a name (DICOM_)": lambda s: s.replace(_ROOT, _ROOT + _ATTR.format("DICOM_DOE_JANE")),
    "XML attribute name": lambda s: s.replace('<Attribute Name="DICOM_MANUFACTURER"', '<Attribute Doe_Jane="1" Name="DICOM_MANUFACTURER"'),
    "XML attribute name with a number": lambda s: s.replace('<Attribute Name="DICOM_MANUFACTURER"', '<Attribute S19-4711="1" Name="DICOM_MANUFACTURER"'),
    "element name": lambda s: s.replace(_ROOT, _ROOT + "<Doe_Jane>1</Doe_Jane>"),
    "element name with a number": lambda s: s.replace(_ROOT, _ROOT + "<S19-4711>1</S19-4711>"),
}


@pytest.mark.parametrize("place", list(PHILIPS))
def test_philips_xml_names_are_taken_out(cli, tmp_path, monkeypatch, place):
    """Before: the names with a number were kept and the slide verified (exit 0, "4711" in the
    output); the others were kept and the slide quarantined (exit 1)."""
    import tests.fixtures.philips_gen as philips_gen

    original = philips_gen.dpufs_xml
    monkeypatch.setattr(philips_gen, "dpufs_xml", lambda *a, **k: PHILIPS[place](original(*a, **k)))
    (tmp_path / "src").mkdir()
    src = philips_gen.make_philips(tmp_path / "src" / "CASE-7001.tiff").path
    assert any(n in src.read_bytes() for n in NEEDLES)
    code, console, out = _run(cli, tmp_path, src)
    assert code == 0, console
    assert _leaks(out, console) == []


BIF = {
    "iScan attribute name": lambda x: x.replace(b"<iScan ", b'<iScan Doe_Jane="1" ', 1),
    "iScan attribute name with a number": lambda x: x.replace(b"<iScan ", b'<iScan S19-4711="1" ', 1),
    "element name": lambda x: x.replace(b"</iScan>", b"<Doe_Jane>1</Doe_Jane></iScan>", 1),
}


@pytest.mark.parametrize("place", list(BIF))
def test_bif_xmp_names_are_taken_out(cli, tmp_path, monkeypatch, place):
    """Before: <iScan S19-4711=""> was kept and verified (exit 0); the other two quarantined."""
    import tests.fixtures.bif_gen as bif_gen

    original = bif_gen.iscan_xmp
    monkeypatch.setattr(bif_gen, "iscan_xmp", lambda *a, **k: BIF[place](original(*a, **k)))
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "CASE-5002.bif"
    bif_gen.make_bif(src)
    assert any(n in src.read_bytes() for n in NEEDLES)
    code, console, out = _run(cli, tmp_path, src)
    assert code == 0, console
    assert _leaks(out, console) == []


# -- places tried and safe before this round (regression) --------------------------------------------


def test_mrxs_section_key_and_data_file_names_already_safe(cli, tmp_path):
    """A Slidedat.ini section [Doe_Jane_SECTION], keys "Doe_Jane" and "S19-4711" in [GENERAL] and a
    Data file named Doe_Jane_0.dat: dropped / renamed by the redactor, named nowhere."""
    from tests.fixtures.mrxs_gen import make_mrxs

    info = make_mrxs(tmp_path / "src", "CASE-0042")
    ini = info.folder / "Slidedat.ini"
    raw = ini.read_bytes().replace(b"[GENERAL]\n", b"[GENERAL]\nDoe_Jane = 1\nS19-4711 = 1\n", 1) + b"\n[Doe_Jane_SECTION]\nFOO = 1\n"
    (info.folder / "Data0000.dat").rename(info.folder / "Doe_Jane_0.dat")
    ini.write_bytes(raw.replace(b"FILE_0 = Data0000.dat", b"FILE_0 = Doe_Jane_0.dat"))
    code, console, out = _run(cli, tmp_path, info.mrxs)
    assert code == 0, console
    assert _leaks(out, console) == []


def test_mrxs_nonhier_record_name_fails_closed(cli, tmp_path):
    """A NONHIER layer and record named "Doe_Jane": kept in Slidedat.ini (OpenSlide finds records
    by name), so the slide is quarantined; the report names neither."""
    from tests.fixtures.mrxs_gen import make_mrxs

    info = make_mrxs(tmp_path / "src", "CASE-0042")
    ini = info.folder / "Slidedat.ini"
    ini.write_bytes(ini.read_bytes().replace(b"= Scan data layer", b"= Doe_Jane layer").replace(b"VAL_0 = default", b"VAL_0 = Doe_Jane"))
    code, console, out = _run(cli, tmp_path, info.mrxs)
    assert code == 1, console
    assert _leaks(out, console) == []


def test_dicom_private_creator_and_code_names_already_safe(cli, tmp_path):
    """Private creator "DOE^JANE" (top level and in an OpticalPathSequence item) and a CodeMeaning
    "Doe^Jane" in a kept code sequence: removed / replaced by the code's standard meaning."""
    from .conftest import shared

    def edit(ds):
        ds.add_new(0x00090010, "LO", "DOE^JANE")
        ds.add_new(0x00091001, "LO", "1")
        item = ds.OpticalPathSequence[0]
        item.add_new(0x00090010, "LO", "DOE^JANE")
        item.add_new(0x00091001, "LO", "1")
        item.IlluminationColorCodeSequence[0].CodeMeaning = "Doe^Jane"

    planted = planted_dicom_copy(shared("dicom/highdicom_sm_image.dcm"), tmp_path, edit)
    code, console, out = _run(cli, tmp_path, planted, "dicom")
    assert code == 0, console
    assert _leaks(out, console) == []


def test_generic_tiff_tag_and_metadata_names_already_safe(cli, tmp_path):
    """--allow-generic: an unknown tag holding "Doe^Jane" (BYTE), GDAL_METADATA item names: every
    ASCII tag blanked, unknown tags dropped."""
    import numpy as np

    src = tmp_path / "src" / "CASE-6001.tif"
    src.parent.mkdir()
    img = np.random.default_rng(0).integers(0, 255, (512, 512, 3)).astype("uint8")
    tags = [(65000, "B", 8, b"Doe^Jane", True), (42112, "s", 0, '<GDALMetadata><Item name="Doe_Jane_4711">1</Item></GDALMetadata>', True)]
    with tifffile.TiffWriter(src) as tw:
        tw.write(img, tile=(256, 256), photometric="rgb", compression="jpeg", extratags=tags, metadata=None)
        tw.write(img[::2, ::2], tile=(256, 256), photometric="rgb", compression="jpeg", subfiletype=1, metadata=None)
    code, console, out = _run(cli, tmp_path, src, "native", "--allow-generic")
    assert code == 0, console
    assert _leaks(out, console) == []


def test_leica_element_and_attribute_names_already_safe(cli, tmp_path, monkeypatch):
    """An element <Doe_Jane> and an element <S19-4711> in scanSettings, an attribute Doe_Jane on
    <pixels>: the Leica redactor keeps only the schema's names."""
    import tests.fixtures.scn_gen as scn_gen

    original = scn_gen.scn_xml

    def planted(*a, **k):
        s = original(*a, **k).replace("<scanSettings>", "<scanSettings><Doe_Jane>1</Doe_Jane><S19-4711>1</S19-4711>", 1)
        return s.replace("<pixels ", '<pixels Doe_Jane="1" ', 1)

    monkeypatch.setattr(scn_gen, "scn_xml", planted)
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "CASE-5001.scn"
    scn_gen.make_scn(src)
    assert b"Doe_Jane" in src.read_bytes()
    code, console, out = _run(cli, tmp_path, src)
    assert code == 0, console
    assert _leaks(out, console) == []


def test_ndpi_property_map_key_names_are_never_reported(cli, tmp_path):
    """NDPI 65449 keys "Doe^Jane", "S19-4711", "Objective.Doe_Jane": dropped by the redactor (as
    before); before this round the report and ``inspect`` named "S19-4711" (a number was shown)."""
    from tests.fixtures.ndpi_gen import CANARIES, make_ndpi

    can = {**CANARIES, "PropertyMap:Doe^Jane": "1", "PropertyMap:S19-4711": "1", "PropertyMap:Objective.Doe_Jane": "20"}
    src, _ = make_ndpi(tmp_path / "src" / "CASE-4001.ndpi", canaries=can)
    code, stdout, stderr = cli("inspect", str(src))
    assert code == 0 and _leaks(tmp_path / "none", stdout + stderr) == [], stdout
    code, console, out = _run(cli, tmp_path, src)
    assert code == 0, console
    assert _leaks(out, console) == []


def test_isyntax_attribute_name_with_a_number(cli, tmp_path):
    """iSyntax header: <Attribute Name="PIM_DP_4711"> is taken out by the redactor (the dpufs rule
    above), and in another tool's output, with an empty value, is a finding.  Before: the Name
    matched its schema form ([A-Z][A-Z0-9_]*), the numbers passed the vocabulary and no value was
    there for the profile check: verified (exit 0)."""
    from tests.fixtures.isyntax_gen import make_isyntax
    from tests.fixtures.redteam_plant import after_isyntax_root, isyntax_attr, isyntax_edit

    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "a-0001.isyntax"
    make_isyntax(src, padding=b"\n" * 4000)
    isyntax_edit(src, lambda s: after_isyntax_root(s, isyntax_attr("PIM_DP_4711", "1")))
    code, console, out = _run(cli, tmp_path, src)
    assert code == 0, console
    assert _leaks(out, console) == []
    (wsi,) = sorted(out.glob("*.isyntax"))
    isyntax_edit(wsi, lambda s: after_isyntax_root(s, isyntax_attr("PIM_DP_4711", "")))
    code, stdout, _ = cli("verify", str(wsi))
    assert code == 1 and "vocabulary" in stdout and "4711" not in stdout, stdout


@pytest.mark.parametrize("edit", [(b"VAL_0 = default", b"VAL_0 = S19-4711"), (b"= VIMSLIDE_HISTOGRAM_DATA", b"= S19-4711")], ids=["record name", "layer name"])
def test_mrxs_nonhier_name_with_a_number_fails_closed(cli, tmp_path, edit):
    """A NONHIER record or layer named "S19-4711": kept in the output's Slidedat.ini (OpenSlide finds
    records by name) and, numbers passing the vocabulary, verified and shared (exit 0, "4711" in
    the output).  Now a section name, or a layer, record or section name HIERARCHICAL gives, with
    a run of 4 or more digits is a vocabulary finding: quarantined, named nowhere in OUT."""
    from tests.fixtures.mrxs_gen import make_mrxs

    info = make_mrxs(tmp_path / "src", "CASE-0042")
    ini = info.folder / "Slidedat.ini"
    raw = ini.read_bytes()
    assert edit[0] in raw
    ini.write_bytes(raw.replace(*edit))
    code, console, out = _run(cli, tmp_path, info.mrxs)
    assert code == 1, console
    assert _leaks(out, console) == []
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert "vocabulary" in {c["check"] for c in slide["verification"]["checks"] if not c["ok"]}
