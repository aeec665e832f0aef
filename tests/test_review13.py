"""Points the twelfth stop's review found in its own merged work (each test fails without its fix)."""

from __future__ import annotations

import pytest

from tests.conftest import run_subprocess, tree_hashes
from tests.fixtures.mrxs_gen import make_mrxs
from wsianon.verify.vocabulary import hex_spelled, unknown_tokens, vocabulary


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_mrxs_overlap_zeroes_nothing(tmp_path, value):
    """OVERLAP_X = nan/inf (no position record) reached ``int()`` in the redactor's
    unscanned-position model: ValueError.  (A whole run refuses such a slide earlier, when OpenSlide
    cannot read it; the model must not depend on that.)  Now nothing is zeroed."""
    from wsianon.converters.mrxs.positions import undrawn_spans
    from wsianon.converters.mrxs.slide import load_slide

    info = make_mrxs(tmp_path / "in", "case", images=2, levels=2)
    ini = info.folder / "Slidedat.ini"
    ini.write_bytes(ini.read_bytes().replace(b"OVERLAP_X = 0", f"OVERLAP_X = {value}".encode()))
    assert undrawn_spans(load_slide(info.mrxs)) == set()
    # and a whole run ends with its reason, never an internal error, the input untouched
    before = tree_hashes(tmp_path / "in")
    assert run_subprocess("key", "init", tmp_path / "k").returncode == 0
    r = run_subprocess("run", tmp_path / "in", "-o", tmp_path / "out", "--key-file", tmp_path / "k")
    assert "internal error" not in r.stderr and r.returncode == 1, r.stderr
    assert tree_hashes(tmp_path / "in") == before and not list((tmp_path / "out").glob("*.mrxs"))


@pytest.mark.parametrize(
    "text",
    [
        "100 101 102 103 104 105 106 107",  # a ramp of levels
        "72 74 76 78 80 82 84 86",
        "120, 118, 110, 104, 99, 90, 80, 70",  # a falling table
        "41 42 43 44 45 46 47 48 49 4A",  # hex pairs rising
    ],
)
def test_rising_or_falling_number_tables_are_not_read_as_text(text):
    """Red team 9 reads 8+ decimal bytes (or hex pairs) set apart as the text they spell; a table
    of levels that only rises or only falls spells no legible word and must not quarantine a slide."""
    assert unknown_tokens(text, vocabulary("aperio")) == []


def test_a_name_in_decimal_bytes_is_still_read():
    assert unknown_tokens("Parmset = 68 111 101 94 74 97 110 101", vocabulary("aperio"))  # "Doe^Jane"
    assert hex_spelled("446F655E4A616E65") == "Doe^Jane"
    assert hex_spelled("4142434445464748") is None  # "ABCDEFGH": a rising run
