"""MRXS camera-image positions (the record OpenSlide places tiles by) are checked before anything
decodes them.

Red team 3 wrote text into the VIMSLIDE_POSITION_BUFFER record (x ≈ 10^9): the slide was refused,
but only when OpenSlide's decode probe hit its 300 s limit — five minutes of a core per slide, in
`run` and in `verify`.  A position far outside the grid Slidedat.ini declares now refuses the slide
at once, with one line; a clean slide's positions (stitching offsets, images not scanned at 0,0)
pass.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from .conftest import run_subprocess
from .fixtures.mrxs_gen import make_mrxs

TEXT_POSITIONS = [b"RTQZ9 Do", b"e^Jane  ", b"MRN4711 "]
REASON = "lies far outside the slide's declared"


def _positions(planted: bool) -> bytes:
    """16 positions of the fixture's 4x4 grid of 256 px camera images: stitching moves some by a
    few pixels (one below zero), one image was not scanned (flag 0 at 0,0); ``planted``: three
    entries hold text instead."""
    out = bytearray()
    for i in range(16):
        x, y = (i % 4) * 256, (i // 4) * 256
        jitter = ((i * 7) % 5) - 2
        flag = 0 if i == 5 else 1
        out += struct.pack("<Bii", flag, 0 if flag == 0 else x + jitter, 0 if flag == 0 else y - jitter)
    if planted:
        for j, chunk in enumerate(TEXT_POSITIONS):
            out[9 * (13 + j) : 9 * (14 + j)] = b"\x01" + chunk
    return bytes(out)


def _mrxs(tmp_path: Path, planted: bool, deflated: bool = False) -> Path:
    """The fixture with its histogram record turned into the position record OpenSlide reads."""
    (tmp_path / "src").mkdir()
    info = make_mrxs(tmp_path / "src", "CASE-7506")
    fname, off, ln = info.blobs["default"]
    blob = _positions(planted)
    if deflated:
        blob = zlib.compress(blob, 0)
    data = bytearray((info.folder / fname).read_bytes())
    data[off : off + ln] = blob + bytes(ln - len(blob))
    (info.folder / fname).write_bytes(bytes(data))
    idx = bytearray((info.folder / "Index.dat").read_bytes())
    k = idx.find(struct.pack("<iii", off, ln, int(fname[-5])))
    assert k > 0
    struct.pack_into("<i", idx, k + 4, len(blob))
    (info.folder / "Index.dat").write_bytes(bytes(idx))
    ini = (info.folder / "Slidedat.ini").read_bytes()
    if deflated:
        swaps = [
            (b"NONHIER_1_NAME = VIMSLIDE_HISTOGRAM_DATA", b"NONHIER_1_NAME = StitchingIntensityLayer"),
            (b"NONHIER_1_VAL_0 = default", b"NONHIER_1_VAL_0 = StitchingIntensityLevel"),
            (b"CURRENT_SLIDE_VERSION = 2\n", b"CURRENT_SLIDE_VERSION = 2.2\n"),
            (b"VIMSLIDE_HISTOGRAM_DATA_FORMAT_VERSION = 257", b"COMPRESSSED_STITCHING_VERSION = 1"),
        ]
    else:
        swaps = [(b"VIMSLIDE_HISTOGRAM_DATA", b"VIMSLIDE_POSITION_BUFFER")]
    for a, b in swaps:
        assert a in ini
        ini = ini.replace(a, b)
    (info.folder / "Slidedat.ini").write_bytes(ini)
    return info.mrxs


def _key(tmp_path: Path) -> Path:
    key = tmp_path / "key"
    key.write_text("ab" * 32)
    key.chmod(0o600)
    return key


def _run(tmp_path: Path, src: Path):
    out = tmp_path / "out"
    # without the check the decode probe spins until its 300 s limit (the subprocess's own)
    r = run_subprocess("run", src, "-o", out, "--key-file", _key(tmp_path))
    return r, out


def test_clean_positions_with_stitching_offsets_are_shared(tmp_path):
    r, out = _run(tmp_path, _mrxs(tmp_path, planted=False))
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(list(out.glob("*.mrxs"))) == 1


def test_text_in_the_position_buffer_is_refused_before_decoding(tmp_path):
    r, out = _run(tmp_path, _mrxs(tmp_path, planted=True))
    text = r.stdout + r.stderr
    assert r.returncode == 1, text
    assert REASON in text and "did not finish within" not in text, text
    assert "Traceback" not in text and "Doe" not in text and "MRN4711" not in text
    assert not list(out.glob("*.mrxs"))


def test_text_in_the_deflated_positions_is_refused_before_decoding(tmp_path):
    r, out = _run(tmp_path, _mrxs(tmp_path, planted=True, deflated=True))
    text = r.stdout + r.stderr
    assert r.returncode == 1 and REASON in text, text
    assert not list(out.glob("*.mrxs"))


def test_verify_refuses_such_a_slide_before_decoding(tmp_path):
    src = _mrxs(tmp_path, planted=True)
    r = run_subprocess("verify", src)
    text = r.stdout + r.stderr
    assert r.returncode == 1, text
    assert REASON in text and "did not finish within" not in text, text
    assert "Traceback" not in text


def test_the_stitching_layer_is_read_by_its_name_whatever_its_value_is_named(tmp_path):
    """OpenSlide finds the position record by the layer's name (NONHIER_i_NAME =
    StitchingIntensityLayer) and reads the layer's first value, whatever that value is named.  The
    check looked for a value named StitchingIntensityLevel: a record named otherwise was placed by
    OpenSlide but never checked (the decode probe then spun until its limit)."""
    from wsianon.converters.mrxs.slide import load_slide
    from wsianon.errors import CorruptInput

    src = _mrxs(tmp_path, planted=True, deflated=True)
    ini = src.with_suffix("") / "Slidedat.ini"
    text = ini.read_bytes()
    assert b"NONHIER_1_VAL_0 = StitchingIntensityLevel" in text
    ini.write_bytes(text.replace(b"NONHIER_1_VAL_0 = StitchingIntensityLevel", b"NONHIER_1_VAL_0 = default"))
    with pytest.raises(CorruptInput) as exc:
        load_slide(src)
    assert REASON in str(exc.value) and "Doe" not in str(exc.value)


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


AS_LIMIT = 6 << 30  # the run's address space (about 1.5 GiB used; margin for threads and libraries): a list of 10^8 positions needs about 10 GiB


def test_a_huge_grid_without_a_position_record_is_never_listed(tmp_path):
    """Without a position record both models listed every camera position of the IMAGENUMBER grid:
    a crafted 10000 x 10000 grid (the fixture's images in its first row) took 9 GiB and more than a
    minute before anything was written.  Positions are now computed when asked for: the slide (which
    OpenSlide opens) is shared and verified, within a 4 GiB address space."""
    import json
    import subprocess
    import sys

    info = make_mrxs(tmp_path / "src", "SLIDE-G8")
    ini = info.folder / "Slidedat.ini"
    text = ini.read_bytes()
    for axis in (b"X", b"Y"):
        assert b"IMAGENUMBER_%s = 4\n" % axis in text
        text = text.replace(b"IMAGENUMBER_%s = 4\n" % axis, b"IMAGENUMBER_%s = 10000\n" % axis)
    ini.write_bytes(text)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "wsianon.cli", "run", str(info.mrxs), "-o", str(out), "--key-file", str(_key(tmp_path))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, preexec_fn=_limit_memory)  # a hang guard, not a timing
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    slide = json.loads((out / "wsianon-report.json").read_text())["slides"][0]
    checks = {c["check"]: c["ok"] for c in slide["verification"]["checks"]}
    assert slide["status"] == "ok" and checks["mrxs-unscanned"] and checks["tiles-frame-size"], checks


def test_a_grid_past_openslides_32_bit_arithmetic_is_refused(tmp_path):
    """20000 x 20000 camera positions: OpenSlide's position count times 9 bytes overflows its
    32-bit int (no scanner writes such a grid).  The redactor refuses the slide with one line;
    the verifier's placement model fails it."""
    from tests.test_mrxs_unscanned import _hidden_checks
    from wsianon.converters.mrxs.slide import load_slide
    from wsianon.errors import CorruptInput

    info = make_mrxs(tmp_path / "src", "SLIDE-G9")
    ini = info.folder / "Slidedat.ini"
    text = ini.read_bytes()
    for axis in (b"X", b"Y"):
        text = text.replace(b"IMAGENUMBER_%s = 4\n" % axis, b"IMAGENUMBER_%s = 20000\n" % axis)
    ini.write_bytes(text)
    with pytest.raises(CorruptInput) as exc:
        load_slide(info.mrxs)
    assert "past OpenSlide's 32-bit arithmetic" in str(exc.value) and "\n" not in str(exc.value)
    ok, detail = _hidden_checks(info.folder)["mrxs-unscanned"]
    assert ok is False and detail.startswith("cannot follow where OpenSlide places the images"), detail
