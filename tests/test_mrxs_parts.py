"""The MRXS package's parts on their own: Slidedat.ini lines survive byte for byte,
in-place edits keep the layout around them, a NONHIER layer renumbers, and the
JPEG text finder sees COM and APPn text."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from wsianon.converters.mrxs import IniDoc, jpeg_text_segments, keyed_slide_id
from wsianon.converters.mrxs.ini import renumber_nonhier
from wsianon.errors import CorruptInput

TEXT = (
    "[GENERAL]\r\nSLIDE_ID = 0123ABCD\r\n; scanned by Dr. X\r\nSLIDE_NAME=Case 7\n\n[HIERARCHICAL]\nNONHIER_0_COUNT = 3\n"
    "NONHIER_0_VAL_0 = A\nNONHIER_0_VAL_0_SECTION = SA\nNONHIER_0_VAL_1 = B\nNONHIER_0_VAL_1_SECTION = SB\nNONHIER_0_VAL_2 = C\n"
    "NONHIER_0_VAL_2_SECTION = SC\n[SB]\nX = 1\n[SC]\nY=Zürich"
)


@pytest.mark.parametrize(
    "raw",
    [
        TEXT.encode("utf-8"),
        b"\xef\xbb\xbf" + TEXT.encode("utf-8"),
        b"\xff\xfe" + TEXT.encode("utf-16-le"),
        b"\xfe\xff" + TEXT.encode("utf-16-be"),
        TEXT.encode("cp1252"),
    ],
    ids=["utf8", "utf8-bom", "utf16le", "utf16be", "cp1252"],
)
def test_ini_renders_unchanged_bytes(raw):
    doc = IniDoc(raw, Path("Slidedat.ini"))
    assert doc.render() == raw
    assert doc.get("SC", "Y") == "Zürich"
    assert doc.get("GENERAL", "SLIDE_ID") == "0123ABCD"
    assert [l.kind for l in doc.lines[:5]] == ["section", "kv", "comment", "kv", "blank"]


def test_ini_edits_keep_spacing_and_endings():
    doc = IniDoc(TEXT.encode(), Path("Slidedat.ini"))
    doc.line("GENERAL", "SLIDE_ID").set_value("FFFF")  # type: ignore[union-attr]
    doc.line("GENERAL", "SLIDE_NAME").set_value("PSEUDO")  # type: ignore[union-attr]
    doc.delete_section("SB")
    out = doc.render().decode()
    assert out.startswith("[GENERAL]\r\nSLIDE_ID = FFFF\r\n; scanned by Dr. X\r\nSLIDE_NAME=PSEUDO\n")
    assert "[SB]" not in out and "X = 1" not in out and "[SC]\nY=Zürich" in out


def test_renumber_nonhier_closes_the_gap():
    doc = IniDoc(TEXT.encode(), Path("Slidedat.ini"))
    renumber_nonhier(doc, 0, {0: 0, 2: 1})  # value 1 (B) removed
    out = doc.render().decode()
    assert "NONHIER_0_COUNT = 2\n" in out
    assert "NONHIER_0_VAL_1 = C\nNONHIER_0_VAL_1_SECTION = SC\n" in out
    assert "= B" not in out and "NONHIER_0_VAL_2" not in out


def test_ini_without_sections_is_corrupt():
    with pytest.raises(CorruptInput, match="no sections"):
        IniDoc(b"SLIDE_ID = 1\n", Path("Slidedat.ini"))


def test_jpeg_text_segments_finds_comment_and_app_text():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", comment=b"Patient Jane Doe")
    jpeg = buf.getvalue()
    app1 = b"\xff\xe1" + (2 + 20).to_bytes(2, "big") + b"Exif\0\0 barcode 4711!"[:20]
    found = jpeg_text_segments(jpeg[:2] + app1 + jpeg[2:])
    assert ("JPEG comment", "Patient Jane Doe") in found
    assert any(kind == "APP1 text" and "barcode 4711" in t for kind, t in found)
    assert jpeg_text_segments(b"not a jpeg") == []


def test_keyed_slide_id_same_length_keyed_and_new():
    a = keyed_slide_id(b"k" * 32, "0123ABCD0123ABCD")
    assert len(a) == 16 and a != "0123ABCD0123ABCD" and a == a.upper()
    assert a == keyed_slide_id(b"k" * 32, "0123ABCD0123ABCD")
    assert a != keyed_slide_id(b"j" * 32, "0123ABCD0123ABCD")
