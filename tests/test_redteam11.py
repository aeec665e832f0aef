"""Red team, round 11: a name written as hex glued to letters.

The vocabulary check reads hex of 8 bytes or more as the text it spells (round 3/4, 9:
``446F655E4A616E65`` is ``Doe^Jane``), but only a run standing apart: a letter or digit on either
side made it no hex run.  Written the usual way with a ``0x`` prefix (``0x446F655E4A616E65``), with
an assembler's ``h`` suffix, or glued to a letter or two (``ID446F…``, ``P446F…``), the token passed
as a CamelCase compound of one-letter pieces and numbers.  So the Aperio redactor kept such a value
under a safe key (``Parmset``), a DICOM input's ManufacturerModelName (kept as the source wrote it)
carried it to the DICOM route's output, and both slides were verified: ``wsianon verify`` passed
(the byte scan harvests no canary from a safe key or a kept attribute).  Now a run of hex digits
bounded by non-hex characters inside a token, holding a hex letter, is judged as the text it
spells (a run of decimal digits glued to a unit stays a number); the DICOM vocabulary no longer
accepts ``P`` + 16 hex digits (our keyed PatientID's form) outside the identity attributes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wsianon.verify.vocabulary import unknown_tokens, vocabulary

from .fixtures.helpers import planted_aperio_copy, plain_svs as _svs, run_dicom_with_model_name, run_keyed as _run

HEX = b"Doe^Jane".hex().upper()

GLUED = {
    "0x prefix": "0x" + HEX,
    "0X prefix, lower case": "0X" + HEX.lower(),
    "h suffix": HEX + "h",
    "letters before": "ID" + HEX,  # "D" is a hex digit: an odd run, read without it
    "one letter before": "X" + HEX,
    "keyed PatientID form": "P" + HEX,
    "letter after": HEX + "Z",
    "MRN as hex": "0x" + b"MRN9923517".hex().upper(),
}

# glued hex that spells nothing, and numbers glued to units: structural as before
CLEAN = [
    "0x00000000000F4240",
    "0x1F2E3D4C5B6A7980",
    "id9e107d9d372bb6826bd81d3542a419d6",
    "12345678901234567890nm",
    "X3F2504E04F8911D39A0C0305E82C3301",
    "0xF9e107d9d372bb6826bd81d3542a419d6",
]


def _holding(out: Path, value: str) -> list[Path]:
    needle = value.encode()
    return [p for p in out.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.parametrize("form", list(GLUED))
@pytest.mark.parametrize("fmt", ["aperio", "ndpi", "mrxs", "dicom"])
def test_glued_hex_is_judged_as_the_text_it_spells(fmt, form):
    assert unknown_tokens(GLUED[form], vocabulary(fmt)), form


@pytest.mark.parametrize("fmt", ["aperio", "dicom"])
def test_glued_hex_that_spells_nothing_stays_structural(fmt):
    v = vocabulary(fmt)
    assert [t for t in CLEAN if unknown_tokens(t, v)] == []


def _blanked_under_a_safe_aperio_key(cli, tmp_path, name: str, value: str) -> None:
    """Before: exit 0, the value kept in the output .svs and the slide verified."""
    src = _svs(tmp_path, name, Parmset=value)
    assert value.encode() in src.read_bytes()
    code, text, out = _run(cli, tmp_path, src)
    assert code == 0, text  # blanked by the redactor: the slide is shared without it
    assert _holding(out, value) == []


@pytest.mark.parametrize("form", ["0x prefix", "h suffix", "letters before"])
def test_glued_hex_under_a_safe_aperio_key_is_blanked(cli, tmp_path, form):
    _blanked_under_a_safe_aperio_key(cli, tmp_path, "CASE-1101.svs", GLUED[form])


@pytest.mark.parametrize("form", ["0x prefix", "letter after"])
def test_verify_refuses_glued_hex_in_another_tools_output(cli, tmp_path, form):
    """Before: ``wsianon verify`` printed CLEAN for the output with the value added."""
    code, text, out = _run(cli, tmp_path, _svs(tmp_path, "CASE-1102.svs"))
    assert code == 0, text
    planted = planted_aperio_copy(out, tmp_path, "|Parmset = " + GLUED[form])
    code, stdout, _ = cli("verify", str(planted))
    assert code == 1 and "vocabulary" in stdout and GLUED[form] not in stdout, stdout


@pytest.mark.parametrize("form", ["0x prefix", "keyed PatientID form"])
def test_glued_hex_in_a_kept_dicom_text_is_refused(cli, tmp_path, form):
    """DICOM route, DICOM input: ManufacturerModelName is kept as the source wrote it.  Before:
    ``0x`` + the name's hex was carried to the output and the instance verified; so was ``P`` +
    the name's hex, the form of our keyed PatientID, which the DICOM vocabulary accepted in any
    attribute (it is accepted in the identity attributes only now, where the PatientID stands)."""
    from .conftest import shared

    value = GLUED[form]
    code, text, out, failed = run_dicom_with_model_name(cli, tmp_path, shared("dicom/highdicom_sm_image.dcm"), value)
    assert code == 1, text
    assert _holding(out, value) == []
    assert "dicom: text vocabulary" in failed, failed


def test_glued_hex_under_a_safe_mrxs_key_is_blanked(cli, tmp_path):
    """MRXS, native: OBJECTIVE_NAME in Slidedat.ini is a safe key kept as vocabulary."""
    from .fixtures.mrxs_gen import make_mrxs

    value = GLUED["0x prefix"]
    make_mrxs(tmp_path / "src", "CASE-1103")
    ini = tmp_path / "src" / "CASE-1103" / "Slidedat.ini"
    text = ini.read_bytes()
    assert b"Plan-Apochromat" in text
    ini.write_bytes(text.replace(b"Plan-Apochromat", value.encode()))
    code, out_text, out = _run(cli, tmp_path, tmp_path / "src" / "CASE-1103.mrxs")
    assert code == 0, out_text
    assert _holding(out, value) == []


# Round 9 read hex pairs set apart by space : , ; . - and decimal bytes set apart by space , ; —
# the same bytes set apart by another separator (or written as U+/%u code points, or as
# backslash-octal escapes) passed as numbers and one- or two-letter tokens, and were kept and
# verified the same way.
NAME = b"Doe^Jane"
SEPARATED = {
    "hex pairs, underscores": "_".join(f"{b:02X}" for b in NAME),
    "hex pairs, slashes": "/".join(f"{b:02X}" for b in NAME),
    "hex pairs, bars": "|".join(f"{b:02x}" for b in NAME),
    "hex pairs, quoted-printable": "".join(f"={b:02X}" for b in NAME),
    "hex pairs, backslashes": "\\".join(f"{b:02X}" for b in NAME),
    "hex pairs, plus signs": "+".join(f"{b:02X}" for b in NAME),
    "decimal bytes, underscores": "_".join(str(b) for b in NAME),
    "decimal bytes, slashes": "/".join(str(b) for b in NAME),
    "decimal bytes, dashes": "-".join(str(b) for b in NAME),
    "decimal bytes, colons": ":".join(str(b) for b in NAME),
    "U+ code points": " ".join(f"U+{b:04X}" for b in NAME),
    "%u escapes": "".join(f"%u{b:04X}" for b in NAME),
    "backslash-octal escapes": "".join(f"\\{b:03o}" for b in NAME),
}

# the same separators between numbers that spell nothing: structural as before
SEPARATED_CLEAN = [
    "10/20/30/40/50/60/70/80",
    "1_2_3_4_5_6_7_8_9_10",
    "255|255|255|0|0|0|128|128",
    "FF_FF_FF_00_00_00_80_80",
    "2021-03-17 08:41:27",
    "1.2.840.10008.5.1.4.1.1.77.1.6",
    "8-16-32-64-128-256-512-1024",
    "U+0030 U+0031 U+0032",
    "\\000\\001\\002",
]


@pytest.mark.parametrize("form", list(SEPARATED))
def test_bytes_set_apart_by_other_separators_are_judged(form):
    assert unknown_tokens(SEPARATED[form], vocabulary("aperio")), form


@pytest.mark.parametrize("fmt", ["aperio", "mrxs", "dicom"])
def test_numbers_set_apart_that_spell_nothing_stay_structural(fmt):
    v = vocabulary(fmt)
    assert [t for t in SEPARATED_CLEAN if unknown_tokens(t, v)] == []


@pytest.mark.parametrize("form", ["hex pairs, underscores", "decimal bytes, slashes", "%u escapes"])
def test_bytes_set_apart_under_a_safe_aperio_key_are_blanked(cli, tmp_path, form):
    _blanked_under_a_safe_aperio_key(cli, tmp_path, "CASE-1104.svs", SEPARATED[form])


def test_verify_refuses_bytes_set_apart_in_another_tools_output(cli, tmp_path):
    value = SEPARATED["hex pairs, slashes"]  # (a bar is the description's own separator)
    code, text, out = _run(cli, tmp_path, _svs(tmp_path, "CASE-1105.svs"))
    assert code == 0, text
    planted = planted_aperio_copy(out, tmp_path, "|Parmset = " + value)
    code, stdout, _ = cli("verify", str(planted))
    assert code == 1 and "vocabulary" in stdout, stdout


def test_our_pseudonyms_are_not_read_as_glued_hex():
    """A WSI- pseudonym is 8 keyed bytes: its hex spells text by chance (here on purpose), as the
    round-3 hex rule already allowed for; a suffix (an instance number) glues nothing to it."""
    h = NAME.hex()
    for fmt in ("aperio", "dicom"):
        assert unknown_tokens(f"WSI-{h}", vocabulary(fmt)) == []
    assert unknown_tokens(f"WSI-{h}-3", vocabulary("dicom")) == []
