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
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tifffile

from wsianon.verify.vocabulary import unknown_tokens, vocabulary

from .fixtures.svs_gen import write_svs

KEY = "ab" * 32
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


def _run(cli, tmp_path: Path, src: Path, target: str = "native") -> tuple[int, str, Path]:
    key = tmp_path / "key"
    key.write_text(KEY)
    key.chmod(0o600)
    out = tmp_path / f"out-{target}-{src.stem}"
    code, stdout, stderr = cli("run", "--target", target, str(src), "-o", str(out), "--key-file", str(key))
    return code, stdout + stderr, out


def _svs(tmp_path: Path, name: str, **extra: str) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    return write_svs(tmp_path / "src" / name, size=(512, 512), levels=1, with_label=False, with_macro=False, extra=extra).path


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
    (svs,) = sorted(out.rglob("*.svs"))
    planted = tmp_path / "planted" / svs.name
    planted.parent.mkdir()
    shutil.copyfile(svs, planted)
    with tifffile.TiffFile(planted, mode="r+b") as tf:
        tag = tf.pages[0].tags[270]
        tag.overwrite(tag.value + "|Parmset = " + ENCODED[form])
    code, stdout, _ = cli("verify", str(planted))
    assert code == 1 and "vocabulary" in stdout and ENCODED[form] not in stdout, stdout
