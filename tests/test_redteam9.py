"""Red team, round 9: a name in a kept place, written in an encoding the text checks did not read.

1. Escaped and spelled bytes.  The vocabulary check read hex (``446F655E4A616E65``), percent-encoding
   and ``\\x`` escapes as the text they spell (round 3/4), but not: hex whose bytes include NUL (a
   NUL-terminated name, or UTF-16: ``44006F00...``), percent-encoded UTF-16 (``%44%00%6F%00``),
   hex pairs written ``0x44 0x6F ...``, ``\\u0044`` escapes, or bytes written as decimal numbers
   (``68 111 101 ...``).  Each passed as numbers or one-letter tokens, so the Aperio redactor kept
   such a value under a safe key (``Parmset``) and the slide was verified with the name in it (the
   byte scan harvests no canary from a safe key).  Now an escaped NUL spells nothing, ``0x`` and
   ``\\u`` forms are unescaped, and 8 or more decimal numbers set apart are judged like hex pairs:
   the redactor blanks the value, and ``verify`` fails another tool's output holding it.
2. Pieces.  A name split by control characters ("DO\\x01E^\\x01JA\\x01NE", NUL or tab between) or by
   spaces into tokens of one or two letters ("Do e^ Ja ne") gave no printable run of four and no
   token longer than two (which pass as axes, units, flags): kept under ``Parmset`` and verified.
   Now a safe Aperio value must be printable (as NDPI's and MRXS's already were), a TIFF text value
   holding a control character other than tab, CR and LF (NULs ending it aside) is a vocabulary
   finding, and three or more one- or two-letter tokens in a row are judged joined.
3. The same forms in other kept values, all leaking before (exit 0, value kept, verified): an
   NDPI safe property and an MRXS Slidedat.ini safe key (now blanked), a Philips XML attribute kept
   as written (now quarantined), a DICOM ManufacturerModelName (now refused).
"""

from __future__ import annotations

import json

import pytest

from wsianon.verify.vocabulary import unknown_tokens, vocabulary

from .fixtures.helpers import planted_aperio_copy, planted_dicom_copy, plain_svs as _svs, run_dicom_with_model_name, run_keyed as _run

NAME = b"Doe^Jane"

ENCODED = {
    "hex, NUL-terminated": (NAME + b"\0").hex().upper(),
    "hex of UTF-16LE": NAME.decode().encode("utf-16-le").hex().upper(),
    "hex of UTF-16BE": NAME.decode().encode("utf-16-be").hex(),
    "percent-encoded UTF-16LE": "".join(f"%{b:02X}" for b in NAME.decode().encode("utf-16-le")),
    "0x hex pairs": " ".join(f"0x{b:02X}" for b in NAME),
    "backslash-u escapes": "".join(f"\\u{b:04x}" for b in NAME),
    "decimal bytes": " ".join(str(b) for b in NAME),
    "decimal bytes, commas": ",".join(str(b) for b in NAME),
}

# the same forms holding no text: numbers, digests and zero runs stay structural
CLEAN = [
    "0000000000000000",
    "0x00 0x01 0x02 0x03 0x04 0x05 0x06 0x07",
    "0 0 0 0 0 0 0 0 0 0",
    "1 2 3 4 5 6 7 8 9 10 11 12",
    "255, 255, 255, 128, 128, 128, 0, 0",
    "1, 2, 3, 4, 5, 6, 7, 8, 9",
    "1024 768 512 384 256 192 128 96",
    "%20%20%00%00",
    "3F2504E04F8911D39A0C0305E82C3301",
]


@pytest.mark.parametrize("form", list(ENCODED))
def test_encoded_name_is_judged_as_the_text_it_spells(form):
    assert unknown_tokens(f"Parmset {ENCODED[form]}", vocabulary("aperio")), form


def test_the_same_forms_without_text_stay_structural():
    v = vocabulary("aperio")
    assert [t for t in CLEAN if unknown_tokens(t, v)] == []


@pytest.mark.parametrize("form", ["hex of UTF-16LE", "percent-encoded UTF-16LE", "decimal bytes"])
def test_an_encoded_name_under_a_safe_aperio_key_is_blanked(cli, tmp_path, form):
    """Before: exit 0, the value kept in the output .svs and the slide verified."""
    value = ENCODED[form].encode()
    src = _svs(tmp_path, "CASE-9101.svs", Parmset=ENCODED[form])
    assert value in src.read_bytes()
    code, text, out = _run(cli, tmp_path, src)
    assert code == 0, text  # blanked by the redactor: the slide is shared without it
    (svs,) = sorted(out.rglob("*.svs"))
    assert value not in svs.read_bytes()


@pytest.mark.parametrize("form", list(ENCODED))
def test_verify_refuses_an_encoded_name_in_another_tools_output(cli, tmp_path, form):
    code, text, out = _run(cli, tmp_path, _svs(tmp_path, "CASE-9102.svs"))
    assert code == 0, text
    planted = planted_aperio_copy(out, tmp_path, "|Parmset = " + ENCODED[form])
    code, stdout, _ = cli("verify", str(planted))
    assert code == 1 and "vocabulary" in stdout and ENCODED[form] not in stdout, stdout


SPLIT = {
    "control characters": "DO\x01E^\x01JA\x01NE",
    "NULs": "DO\x00E^\x00JA\x00NE",
    "tabs": "DO\tE^\tJA\tNE",
    "spaces": "Do e^ Ja ne",
}


@pytest.mark.parametrize("form", list(SPLIT))
def test_a_name_in_short_pieces_under_a_safe_aperio_key_is_blanked(cli, tmp_path, form):
    """Before: exit 0, the pieces kept in the output .svs and the slide verified."""
    value = SPLIT[form].encode()
    src = _svs(tmp_path, "CASE-9201.svs", Parmset=SPLIT[form])
    assert value in src.read_bytes()
    code, text, out = _run(cli, tmp_path, src)
    assert code == 0, text
    (svs,) = sorted(out.rglob("*.svs"))
    assert value not in svs.read_bytes()


@pytest.mark.parametrize("form", ["control characters", "NULs", "spaces"])
def test_verify_refuses_a_name_in_short_pieces_in_another_tools_output(cli, tmp_path, form):
    code, text, out = _run(cli, tmp_path, _svs(tmp_path, "CASE-9202.svs"))
    assert code == 0, text
    planted = planted_aperio_copy(out, tmp_path, "|Parmset = " + SPLIT[form])
    assert SPLIT[form].encode() in planted.read_bytes()
    code, stdout, _ = cli("verify", str(planted))
    assert code == 1 and "vocabulary" in stdout, stdout


def test_short_tokens_of_real_text_still_pass():
    v = vocabulary("aperio")
    for text in ("JPEG/RGB Q=70", "X Y Z", "R G B", "46000x32914 [0,100 46000x32714] (256x256) JPEG/RGB Q=30"):
        assert not unknown_tokens(text, v), text


@pytest.mark.parametrize("value", ["Do e Ja ne", ENCODED["hex of UTF-16LE"]])
def test_a_name_in_a_kept_dicom_text_is_refused(cli, tmp_path, value):
    """DICOM route, DICOM input: ManufacturerModelName is kept as the source wrote it and judged
    by the vocabulary ("Jane Doe" there is refused).  Before: the name in pieces or as hex of
    UTF-16 was kept and the instance verified.  Since stop 40 a scanner's name holding a number
    of 4 or more digits (the hex's "44006") is a dummy on the route, the slide shared without it
    (``tests/test_redteam17_sparse_model.py``)."""
    from wsianon.profiles.dicom import device_text_ok

    from .conftest import shared

    code, text, out, failed = run_dicom_with_model_name(cli, tmp_path, shared("dicom/highdicom_sm_image.dcm"), value)
    assert not [p for p in out.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]
    if device_text_ok(value):
        assert code == 1, text
        assert "dicom: text vocabulary" in failed, failed
    else:
        assert code == 0 and not failed, text


def _dicom_safe_places():
    from pydicom.dataelem import DataElement

    utf16 = NAME.decode().encode("utf-16-le")

    def private_ob(ds):
        ds.add_new(0x00091010, "LO", "ACME")
        ds.add(DataElement(0x00091011, "OB", utf16))

    def latin1(ds):
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ManufacturerModelName = "MÜLLER"

    def cjk(ds):
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.ManufacturerModelName = "山田"

    return {
        "UTF-16 in a private OB": (private_ob, utf16),
        "UTF-16 in a UN": (lambda ds: ds.add(DataElement(0x00400600, "UN", utf16)), utf16),
        "Latin-1 model name": (latin1, "MÜLLER".encode("latin-1")),
        "UTF-8 CJK model name": (cjk, "山田".encode()),
    }


@pytest.mark.parametrize("place", list(_dicom_safe_places()))
def test_dicom_encoded_places_already_safe(cli, tmp_path, place):
    """Tried in round 9 and safe before it: removed (private, UN) or refused (not vocabulary)."""
    from .conftest import shared

    edit, needle = _dicom_safe_places()[place]
    planted = planted_dicom_copy(shared("dicom/highdicom_sm_image.dcm"), tmp_path, edit)
    assert needle in planted.read_bytes()
    _code, text, out = _run(cli, tmp_path, planted, "dicom")
    assert not [p for p in out.rglob("*") if p.is_file() and needle in p.read_bytes()], text


@pytest.mark.parametrize("value", ["Do e Ja ne", ENCODED["hex of UTF-16LE"]])
def test_a_name_in_a_kept_philips_attribute_is_blanked(cli, tmp_path, monkeypatch, value):
    """Philips TIFF, native: DICOM_LOSSY_IMAGE_COMPRESSION_METHOD is a safe attribute.  Round 9:
    the name there in pieces or as hex of UTF-16 was kept and the slide verified; then it was
    quarantined by the vocabulary check; since stop 37 the redactor keeps a safe attribute only as
    the format's vocabulary (as for NDPI, below): blanked, and the slide verifies."""
    import tests.fixtures.philips_gen as philips_gen

    original = philips_gen.dpufs_xml
    monkeypatch.setattr(philips_gen, "dpufs_xml", lambda *a, **k: original(*a, **k).replace("PHILIPS_DP_1_0", value))
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "CASE-9501.tiff"
    philips_gen.make_philips(src)
    assert value.encode() in src.read_bytes()
    code, text, out = _run(cli, tmp_path, src)
    assert code == 0, text
    assert not [p for p in out.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert any("DICOM_LOSSY_IMAGE_COMPRESSION_METHOD" in r["name"] and r["action"] != "kept" for r in slide["removed"]), slide["removed"]


@pytest.mark.parametrize("form", ["hex of UTF-16LE", "decimal bytes"])
def test_an_encoded_name_under_a_safe_ndpi_property_is_blanked(cli, tmp_path, form):
    """NDPI, native: Objective.Lens.Name is a safe property kept as vocabulary.  Before: the name
    written there in these forms was kept and the slide verified; now the redactor blanks it."""
    from .fixtures.ndpi_gen import CANARIES, make_ndpi

    value = ENCODED[form]
    src, _ = make_ndpi(tmp_path / "src" / "CASE-9601.ndpi", canaries={**CANARIES, "PropertyMap:Objective.Lens.Name": value})
    assert value.encode() in src.read_bytes()
    code, text, out = _run(cli, tmp_path, src)
    assert code == 0, text
    assert not [p for p in out.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]


@pytest.mark.parametrize("value", [ENCODED["hex of UTF-16LE"], "Do e Ja ne"])
def test_a_name_under_a_safe_mrxs_key_is_blanked(cli, tmp_path, value):
    """MRXS, native: OBJECTIVE_NAME in Slidedat.ini is a safe key kept as vocabulary.  Before: the
    name there as hex of UTF-16 or in pieces was kept and the slide verified; now it is blanked."""
    from .fixtures.mrxs_gen import make_mrxs

    make_mrxs(tmp_path / "src", "CASE-9701")
    ini = tmp_path / "src" / "CASE-9701" / "Slidedat.ini"
    text = ini.read_bytes()
    assert b"Plan-Apochromat" in text
    ini.write_bytes(text.replace(b"Plan-Apochromat", value.encode()))
    code, out_text, out = _run(cli, tmp_path, tmp_path / "src" / "CASE-9701.mrxs")
    assert code == 0, out_text
    assert not [p for p in out.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]
