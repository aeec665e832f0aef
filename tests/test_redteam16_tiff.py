"""Red team, stop 39 (TIFF-family native outputs: route and verifier).

* Kept TIFF text values kept the source's runs of spaces (an NDPI PropertyMap ``AUTO`` repeated
  with runs of 9, 8, 7 ... spaces, a BIF Software ``Ventana iScan          iScan``) and the count
  of their trailing NULs (BIF Software with 110 NULs): the lengths spelled an MRN and a birth
  date. Kept versions (``ScanOutputManager 98765432.19790312.4711``) took any length.
* BitsPerSample and SampleFormat kept values beyond SamplesPerPixel, which no reader reads.

The route writes every kept ASCII value in one form (one space between words, no whitespace at
its ends, exactly one NUL; count = length + 1), bounds kept versions and cuts per-sample tags to
SamplesPerPixel values; the verifier refuses anything else, from the output alone.
"""

from __future__ import annotations

import struct
from pathlib import Path

import tifffile

from wsianon.io.tiff import ASCII, TiffStructure

MRN, DOB = "98765432", "19790312"


def _spaced(word: str, digits: str) -> str:
    """``word`` repeated, the digit d written as a run of d + 1 spaces between two of them."""
    return word + "".join(" " * (int(c) + 1) + word for c in digits)


def _ascii_values(path: Path) -> list[tuple[int, int, bytes]]:
    with TiffStructure(path) as ts:
        return [(ifd.index, t, ts.raw(e)) for ifd in ts.ifds for t, e in ifd.entries.items() if e.type == ASCII]


def _run_ok(cli, src: Path, out: Path) -> Path:
    code, stdout, stderr = cli("run", "--target", "native", str(src), "-o", str(out))
    assert code == 0, stdout + stderr
    (written,) = [p for p in out.iterdir() if p.name.startswith("WSI-") and p.is_file()]
    return written


def _each_refused(cli, out: Path, written: Path, good: bytes, plants) -> None:
    """``good`` (in the verified output ``written``) replaced by each of ``plants`` (same length)
    in turn: ``verify`` of ``out`` must fail every time; the output is restored after."""
    data = written.read_bytes()
    assert good in data
    for planted in plants:
        assert len(planted) == len(good)
        written.write_bytes(data.replace(good, planted))
        code, stdout, stderr = cli("verify", str(out))
        assert code != 0, (planted, stdout + stderr)
    written.write_bytes(data)


def _assert_one_form(path: Path) -> None:
    for ifd, tag, raw in _ascii_values(path):
        text = raw[:-1]
        assert raw.endswith(b"\0") and b"\0" not in text, (ifd, tag, raw[-20:])
        assert b"  " not in text and text == text.lstrip(), (ifd, tag)


def test_runs_of_spaces_in_kept_text_values_are_one_space(cli, tmp_path):
    from .fixtures.bif_gen import make_bif
    from .fixtures.ndpi_gen import CANARIES, make_ndpi

    src = tmp_path / "in"
    src.mkdir()
    make_ndpi(src / "CASE-5.ndpi", canaries={**CANARIES, "PropertyMap:AutoFocus.AFMethod": _spaced("AUTO", MRN)})
    make_bif(src / "CASE-10.bif", software="Ventana " + _spaced("iScan", DOB))
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "native", str(src), "-o", str(out))
    assert code == 0, stdout + stderr
    written = sorted(p for p in out.iterdir() if p.name.startswith("WSI-") and p.suffix in (".ndpi", ".bif"))
    assert len(written) == 2
    for p in written:
        _assert_one_form(p)
    ndpi = next(p for p in written if p.suffix == ".ndpi")
    pm = [raw for _, tag, raw in _ascii_values(ndpi) if tag == 65449]
    assert pm and b"AutoFocus.AFMethod=AUTO AUTO AUTO" in pm[0]
    code, stdout, stderr = cli("verify", str(out))
    assert code == 0, stdout + stderr


def test_trailing_nuls_of_a_kept_value_are_one(cli, tmp_path):
    from .fixtures.bif_gen import make_bif

    src = tmp_path / "CASE-13.bif"
    make_bif(src, software="Ventana iScan" + "\0" * 97)
    with tifffile.TiffFile(src) as tf:
        assert {p.tags[305].count for p in tf.pages if 305 in p.tags} == {110}
    written = _run_ok(cli, src, tmp_path / "out")
    counts = {raw for _, tag, raw in _ascii_values(written) if tag == 305}
    assert counts == {b"Ventana iScan\0"}


def test_kept_versions_are_bounded(cli, tmp_path):
    from .fixtures.bif_gen import make_bif

    src = tmp_path / "CASE-23.bif"
    make_bif(src, software=f"ScanOutputManager {MRN}.{DOB}.4711")
    written = _run_ok(cli, src, tmp_path / "out")
    assert MRN.encode() not in written.read_bytes()
    assert {raw for _, tag, raw in _ascii_values(written) if tag == 305} == {b"\0"}
    # the real form stays (Ventana-1.bif, the fixture's default)
    src2 = tmp_path / "CASE-24.bif"
    make_bif(src2)
    written = _run_ok(cli, src2, tmp_path / "out2")
    assert {raw for _, tag, raw in _ascii_values(written) if tag == 305} == {b"ScanOutputManager 1.1.0.15854\0"}


def test_verify_refuses_text_values_not_in_one_form(cli, tmp_path):
    """A verified output whose Software (BIF) or PropertyMap (NDPI) is changed in place, same
    length: a run of spaces, NULs after the text, whitespace at an end, a line that is no item."""
    from .fixtures.bif_gen import make_bif
    from .fixtures.ndpi_gen import make_ndpi

    make_bif(tmp_path / "CASE-1.bif")
    out = tmp_path / "out"
    written = _run_ok(cli, tmp_path / "CASE-1.bif", out)
    good = b"ScanOutputManager 1.1.0.15854\0"
    _each_refused(cli, out, written, good, (b"ScanOutputManager  1.1.0.1585\0", b"ScanOutputManager 1.1.0\0\0\0\0\0\0\0", b"ScanOutputManager 1.1.0.1585 \0"))
    code, stdout, stderr = cli("verify", str(out))
    assert code == 0, stdout + stderr

    make_ndpi(tmp_path / "CASE-2.ndpi")
    out = tmp_path / "out-ndpi"
    written = _run_ok(cli, tmp_path / "CASE-2.ndpi", out)
    _each_refused(cli, out, written, b"Magnificant=20\r\n", (b"Magnificant=20 \n", b"Magnificant= 20\n", b"Magnificant=20\n\n"))


def _extra_per_sample(src: Path, tag: int) -> None:
    """Level 0's (IFD 0) ``tag`` given (first, first, first, 9876, 5432, 1979, 312, 4711): values
    beyond SamplesPerPixel (3), appended to the file (classic TIFF)."""
    first = 8 if tag == 258 else 1
    vals = [first] * 3 + [9876, 5432, 1979, 312, 4711]
    b = bytearray(src.read_bytes())
    ifd0 = struct.unpack_from("<I", b, 4)[0]
    n = struct.unpack_from("<H", b, ifd0)[0]
    at = len(b) + (-len(b)) % 2
    b += bytes(at - len(b)) + struct.pack("<%dH" % len(vals), *vals)
    ents = [bytes(b[ifd0 + 2 + 12 * i : ifd0 + 14 + 12 * i]) for i in range(n)]
    ents = [e for e in ents if struct.unpack_from("<H", e)[0] != tag] + [struct.pack("<HHII", tag, 3, len(vals), at)]
    ents.sort(key=lambda e: struct.unpack_from("<H", e)[0])
    nxt = struct.unpack_from("<I", b, ifd0 + 2 + 12 * n)[0]
    pos = len(b) + (-len(b)) % 4
    b += bytes(pos - len(b)) + struct.pack("<H", len(ents)) + b"".join(ents) + struct.pack("<I", nxt)
    struct.pack_into("<I", b, 4, pos)
    src.write_bytes(bytes(b))


def test_per_sample_tags_keep_samples_per_pixel_values(cli, tmp_path):
    from .fixtures.svs_gen import write_svs

    for tag in (258, 339):
        src = tmp_path / f"CASE-{tag}.svs"
        write_svs(src)
        _extra_per_sample(src, tag)
        with tifffile.TiffFile(src) as tf:
            assert tf.pages[0].tags[tag].count == 8
        out = tmp_path / f"out{tag}"
        written = _run_ok(cli, src, out)
        with tifffile.TiffFile(written) as tf:
            t = tf.pages[0].tags[tag]
            assert t.count == 3 and [int(v) for v in t.value] == [8 if tag == 258 else 1] * 3
        assert b"".join(struct.pack("<H", v) for v in (9876, 5432, 1979)) not in written.read_bytes()
        code, stdout, stderr = cli("verify", str(out))
        assert code == 0, stdout + stderr


def test_verify_refuses_per_sample_counts_other_than_samples_per_pixel(cli, tmp_path):
    from .fixtures.svs_gen import write_svs

    write_svs(tmp_path / "CASE-1.svs")
    out = tmp_path / "out"
    written = _run_ok(cli, tmp_path / "CASE-1.svs", out)
    data = written.read_bytes()
    with TiffStructure(written) as ts:
        e = ts.ifds[0].entries[258]
        assert e.count == 3 and not e.inline
        count_at = e.entry_offset + 4
    for count in (4, 2):
        b = bytearray(data)
        struct.pack_into("<I", b, count_at, count)
        written.write_bytes(bytes(b))
        code, stdout, stderr = cli("verify", str(out))
        assert code != 0, (count, stdout + stderr)
