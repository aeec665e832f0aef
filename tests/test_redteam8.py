"""Red team, round 8: identifiers where no redactor looks.

1. The symbol list of a JPEG Huffman table a scan uses.  A table's symbols are bytes; the codes a
   tile's coded units never use decode to nothing, so their symbols can be any bytes — a name
   among the 125 sixteen-bit codes of the Annex K AC table changes no pixel.  The unused-table
   rule (round 2) judged only tables no scan names, and the vocabulary check masks decoder tables
   (Annex K tables spell "CDEFGHIJSTUVWXYZ"), so the name reached OUT on both routes with the
   slide verified.  Now ``io.jpeg.walk`` refuses a table whose symbols of one code length are not
   in ascending order (ITU T.81 Annex K.2; every encoder's table in the real samples): the slide
   is quarantined (``tiles-identical`` / ``dicom: frame
   segments``), and ``verify`` fails another tool's output holding one.
2. Numbers a JPEG 2000 header holds (CRG, CAP, POC): see section 2 below.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from wsianon.io.jpeg import DHT, JpegError, huffman_symbols_problem, table_spans, walk
from wsianon.io.jpeg_std import standard_table

from .conftest import BUNDLED
from .fixtures.plant_rt2 import rewrite_streams
from .fixtures.plant_rt8 import J2K_PLACES, NAME, decoded, huffman_symbols
from .fixtures.svs_gen import write_svs

KEY = "ab" * 32
CMU = BUNDLED / "CMU-1-Small-Region.svs"


def _streams(path: Path) -> list[bytes]:
    """Every JPEG tile/strip of ``path`` (its JPEGTables joined in front where it has one)."""
    out = []
    with tifffile.TiffFile(path) as tf:
        fh = tf.filehandle
        for page in tf.pages:
            if page.compression != 7:
                continue
            jt = page.tags.get(347)
            for off, cnt in zip(page.dataoffsets, page.databytecounts):
                fh.seek(off)
                data = fh.read(cnt)
                out.append(jt.value[:-2] + data[2:] if jt is not None else data)
    return out


def _tables(data: bytes) -> list[bytes]:
    out = []
    for g in walk(data):
        if g.marker == DHT:
            body = data[g.payload_offset : g.payload_offset + g.payload_length]
            out += [body[s:e] for _, s, e in table_spans(DHT, body)]
    return out


def _slide(tmp_path: Path, name: str) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    return write_svs(tmp_path / "src" / name, size=(1024, 768), levels=2).path


def _planted(tmp_path: Path) -> Path:
    """A generated SVS whose every JPEG tile carries the name in its AC table's symbols; the
    fixture proves the plant invisible (every tile decodes to the same pixels)."""
    src = _slide(tmp_path, "CASE-8101.svs")
    before = _streams(src)
    assert rewrite_streams(src, tile=huffman_symbols) == len(before)
    after = _streams(src)
    assert all(NAME in a for a in after)
    assert all(np.array_equal(decoded(a), decoded(b)) for a, b in zip(after, before))
    return src


def _hits(out: Path, *texts: str) -> list[str]:
    found = [p.name for p in out.rglob("*") if p.is_file() and NAME[:8] in p.read_bytes()]
    return found + ["console" for t in texts if NAME[:8].decode() in t]


def _run(cli, tmp_path: Path, src: Path, target: str) -> tuple[int, str, Path]:
    key = tmp_path / "key"
    key.write_text(KEY)
    key.chmod(0o600)
    out = tmp_path / f"out-{target}-{src.stem}"
    code, stdout, stderr = cli("run", "--target", target, str(src), "-o", str(out), "--key-file", str(key))
    assert _hits(out, stdout, stderr) == []
    return code, stdout + stderr, out


def test_a_table_holding_text_is_refused_and_encoders_tables_are_not():
    planted = huffman_symbols(_streams(CMU)[0])  # CMU-1: JPEGTables + an abbreviated tile
    with pytest.raises(JpegError, match="out of order"):
        walk(planted)
    # every table of the real sample, libjpeg's optimal tables and the Annex K tables pass
    streams = _streams(CMU)
    for quality in (30, 90):
        for optimize in (False, True):
            b = io.BytesIO()
            img = (np.random.default_rng(quality).random((64, 64, 3)) * 255).astype("uint8")
            Image.fromarray(img).save(b, "JPEG", quality=quality, optimize=optimize)
            streams.append(b.getvalue())
    tables = [t for s in streams for t in _tables(s)]
    assert len(tables) > 8 and all(huffman_symbols_problem(t) is None for t in tables)
    assert any(standard_table(False, t) for t in tables)
    # a table listing every symbol in ascending order (an encoder that does not optimize a lossless
    # DC table writes 256 entries, up to 255) passes; two of them swapped do not
    every = bytes([0x00]) + bytes(14) + bytes([241, 15]) + bytes(range(256))
    assert huffman_symbols_problem(every) is None
    assert huffman_symbols_problem(every[:17] + bytes([1, 0]) + every[19:]) == "lists a code length's symbols out of order"


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_text_in_a_used_huffman_table_fails_closed(cli, tmp_path, target):
    """Before: the slide was verified and the name was in every output tile (native) or frame."""
    src = _planted(tmp_path)
    code, text, out = _run(cli, tmp_path, src, target)
    assert code != 0 and "1 failed" in text, text
    assert not [p for p in out.rglob("*") if p.suffix in (".svs", ".dcm")]
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    failed = {c["check"] for c in slide["verification"]["checks"] if not c["ok"]}
    assert failed & ({"tiles-identical"} if target == "native" else {"dicom: frame segments"}), failed


def test_the_same_slide_without_the_text_is_shared(cli, tmp_path):
    code, text, out = _run(cli, tmp_path, _slide(tmp_path, "CASE-8102.svs"), "native")
    assert code == 0 and [p for p in out.rglob("*.svs")], text


def test_verify_refuses_another_tools_output_holding_it(cli, tmp_path):
    code, text, out = _run(cli, tmp_path, _slide(tmp_path, "CASE-8103.svs"), "native")
    (svs,) = sorted(out.rglob("*.svs"))
    assert code == 0
    code, stdout, _ = cli("verify", "--json", str(svs))
    assert code == 0, stdout
    rewrite_streams(svs, tile=huffman_symbols)
    code, stdout, _ = cli("verify", "--json", str(svs))
    failed = {c["check"] for c in json.loads(stdout)[0]["checks"] if not c["ok"]}
    assert code != 0 and failed, stdout
    assert NAME[:8].decode() not in stdout


# --- 2. numbers a JPEG 2000 header holds ----------------------------------------------------------
#
# A codestream's CRG (component registration), CAP (capabilities) and POC (progression order
# changes) segments were judged by their length only: their 16-bit fields are numbers a decoder
# reads and ignores (CRG, CAP of parts it does not know) or clamps (POC's end layer), so the name
# rode in every tile (12 to 16 bytes a tile) on both routes, the slide verified.  Now each field
# must lie in its own range (CRG whole quarters of a sample; CAP only Part 15's, as HTJ2K writes
# it; POC within the codestream's resolutions, components and layers; RGN's component and style):
# the codestream is not followed and the slide is quarantined.


def _j2k(img: np.ndarray) -> bytes:
    import imagecodecs

    return imagecodecs.jpeg2k_encode(img, codecformat="j2k")


@pytest.mark.parametrize("place", list(J2K_PLACES))
def test_numbers_of_a_jpeg2000_header_are_judged(place):
    import imagecodecs

    from wsianon.io.codestreams import j2k_segments

    img = np.random.default_rng(8).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    clean = _j2k(img)
    planted = J2K_PLACES[place](clean)
    assert np.array_equal(imagecodecs.jpeg2k_decode(planted), imagecodecs.jpeg2k_decode(clean))  # no pixel changes
    assert j2k_segments(clean) is not None and j2k_segments(planted) is None


def test_what_encoders_write_in_those_segments_is_followed():
    import imagecodecs

    from wsianon.io.codestreams import j2k_segments

    from .fixtures.plant_rt8 import _seg2k, j2k_main

    img = np.random.default_rng(9).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    clean = _j2k(img)
    assert j2k_segments(imagecodecs.htj2k_encode(img)) is not None  # CAP 0x00020000 + Ccap15
    assert j2k_segments(j2k_main(clean, _seg2k(0x63, bytes(4) + b"\x80\x00\x80\x00" * 2))) is not None  # chroma centred
    # one progression (LRCP) over every resolution, component and layer; an RGN of shift 5
    assert j2k_segments(j2k_main(clean, _seg2k(0x5F, b"\x00\x00\x00\x01\x21\x03\x00"))) is not None
    assert j2k_segments(j2k_main(clean, _seg2k(0x5F, b"\x00\x00\xff\xff\x21\x00\x00"))) is not None  # "all" layers, components
    assert j2k_segments(j2k_main(clean, _seg2k(0x5F, b"\x00\x00\x00\x02\x21\x03\x00"))) is None  # 2 layers of 1
    assert j2k_segments(j2k_main(clean, _seg2k(0x5E, b"\x00\x00\x05"))) is not None
    assert j2k_segments(j2k_main(clean, _seg2k(0x5E, b"\x00\x01\x05"))) is None  # a style Part 1 does not define


@pytest.mark.parametrize("target", ["native", "dicom"])
@pytest.mark.parametrize("place", list(J2K_PLACES))
def test_text_in_jpeg2000_header_numbers_fails_closed(cli, tmp_path, place, target):
    """Before: shared on both routes (``verify`` passed), the name in every level-0 tile or frame."""
    from .test_redteam_tiff import _j2k_svs

    (tmp_path / "src").mkdir()
    src = _j2k_svs(tmp_path / "src" / "CASE-8201.svs", J2K_PLACES[place])
    marks = NAME[:2] + b"\x21\x03" if place == "poc" else NAME[:8]
    assert src.read_bytes().count(marks) == 4
    code, stdout, stderr = cli("run", "--target", target, str(src), "-o", str(tmp_path / "out"))
    out = tmp_path / "out"
    assert code != 0 and "1 failed" in stdout + stderr, stdout + stderr
    assert not [p for p in out.rglob("*") if p.suffix in (".svs", ".dcm")]
    assert not [p for p in out.rglob("*") if p.is_file() and marks in p.read_bytes()]


def test_verify_refuses_text_in_jpeg2000_header_numbers_of_another_tools_output(cli, tmp_path):
    from .fixtures.plant_rt2 import rewrite_level0_tiles
    from .test_redteam_tiff import _j2k_svs

    (tmp_path / "src").mkdir()
    src = _j2k_svs(tmp_path / "src" / "CASE-8202.svs")
    code, stdout, stderr = cli("run", "--target", "native", str(src), "-o", str(tmp_path / "out"))
    (svs,) = sorted((tmp_path / "out").rglob("*.svs"))
    assert code == 0 and cli("verify", str(svs))[0] == 0, stdout + stderr
    rewrite_level0_tiles(svs, J2K_PLACES["crg"])
    code, stdout, _ = cli("verify", "--json", str(svs))
    failed = {c["check"] for c in json.loads(stdout)[0]["checks"] if not c["ok"]}
    assert code != 0 and "tiles-coded-tight" in failed, stdout


# --- 3. places tried that are already safe (kept here so they stay safe) ----------------------------
#
# Each plants the name where a list-driven redactor would not look; the route must share the
# slide without it (or refuse the slide) and ``verify`` must fail another tool's output holding it.

DNAME = NAME.decode()


def _icon():
    from pydicom.dataset import Dataset

    it = Dataset()
    it.SamplesPerPixel, it.PhotometricInterpretation, it.Rows, it.Columns = 1, "MONOCHROME2", 2, 9
    it.BitsAllocated, it.BitsStored, it.HighBit, it.PixelRepresentation = 8, 8, 7, 0
    it.PixelData = NAME + b"X"
    it["PixelData"].VR = "OB"
    return it


def _dicom_places():
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    def deep_text(ds):
        step = Dataset()
        step.ValueType, step.TextValue = "TEXT", DNAME
        name = Dataset()
        name.CodeValue, name.CodingSchemeDesignator, name.CodeMeaning = "121106", "DCM", "Comment"
        step.ConceptNameCodeSequence = Sequence([name])
        prep = Dataset()
        prep.SpecimenPreparationStepContentItemSequence = Sequence([step])
        ds.SpecimenDescriptionSequence[0].SpecimenPreparationSequence = Sequence([prep])

    def meta(ds):
        ds.file_meta.PrivateInformationCreatorUID = "1.2.3.4"
        ds.file_meta.PrivateInformation = NAME + b"\0"

    def overlay(ds):
        for tag, vr, value in ((0x60000010, "US", 2), (0x60000011, "US", 9), (0x60000022, "LO", DNAME), (0x60003000, "OW", NAME + b"X")):
            ds.add(DataElement(tag, vr, value))

    return {
        "icon image": lambda ds: setattr(ds, "IconImageSequence", Sequence([_icon()])),
        "nested icon image": lambda ds: setattr(ds.SpecimenDescriptionSequence[0], "IconImageSequence", Sequence([_icon()])),
        "file meta private information": meta,
        "trailing padding": lambda ds: ds.add(DataElement(0xFFFCFFFC, "OB", NAME + b"\0")),
        "overlay": overlay,
        "nested UN": lambda ds: ds.SpecimenDescriptionSequence[0].add(DataElement(0x00400600, "UN", NAME + b" ")),
        "deep specimen text": deep_text,
    }


@pytest.fixture(scope="module")
def dicom_clean(tmp_path_factory):
    from .conftest import shared

    src = shared("dicom/highdicom_sm_image.dcm")
    out = tmp_path_factory.mktemp("rt8dcm") / "out"
    from typer.testing import CliRunner

    from wsianon.cli import app

    res = CliRunner().invoke(app, ["run", "--target", "dicom", str(src), "-o", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.stdout
    (dcm,) = sorted(out.rglob("*.dcm"))
    return src, dcm


@pytest.mark.parametrize("place", list(_dicom_places()))
def test_dicom_places_already_safe(cli, tmp_path, dicom_clean, place):
    import warnings

    import pydicom

    src, dcm = dicom_clean
    edit = _dicom_places()[place]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(src)
        edit(ds)
        planted_src = tmp_path / "in" / src.name
        planted_src.parent.mkdir()
        ds.save_as(planted_src)
        assert NAME[:8] in planted_src.read_bytes()
        out = tmp_path / "out"
        code, stdout, stderr = cli("run", "--target", "dicom", str(planted_src), "-o", str(out))
        assert _hits(out, stdout, stderr) == []
        ds = pydicom.dcmread(dcm)
        edit(ds)
        planted = tmp_path / "planted" / dcm.parent.name / dcm.name
        planted.parent.mkdir(parents=True)
        ds.save_as(planted)
    code, stdout, _ = cli("verify", str(planted))
    assert code == 1 and DNAME[:8] not in stdout, stdout


def test_a_group_length_in_another_tools_output_is_refused(cli, dicom_clean, tmp_path):
    """pydicom never writes one; a group length holding 4 letters, inserted byte by byte."""
    import struct

    _src, dcm = dicom_clean
    data = dcm.read_bytes()
    start = 144 + struct.unpack_from("<I", data, 140)[0]  # after the File Meta group
    assert data[start : start + 2] == b"\x08\x00"
    planted = tmp_path / dcm.parent.name / dcm.name
    planted.parent.mkdir()
    planted.write_bytes(data[:start] + b"\x08\x00\x00\x00UL\x04\x00" + NAME[1:5] + data[start:])
    code, stdout, _ = cli("verify", str(planted))
    assert code == 1 and "dicom: closed world" in stdout, stdout


def _tiff_places():
    import struct

    from .fixtures.plant_rt2 import set_entry

    def ifd(entries):
        return struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHI", *e[:3]) + e[3] for e in entries) + bytes(4)

    def subifd(ents, alloc):
        s = alloc(NAME + b"\0")
        return set_entry(ents, alloc, 330, 13, 1, struct.pack("<I", alloc(ifd([(270, 2, len(NAME) + 1, struct.pack("<I", s))]))), False)

    def interop(ents, alloc):
        u = alloc(NAME)
        inter = alloc(ifd([(1, 2, 4, b"R98\0"), (2, 7, len(NAME), struct.pack("<I", u))]))
        return set_entry(ents, alloc, 34665, 13, 1, struct.pack("<I", alloc(ifd([(40965, 13, 1, struct.pack("<I", inter))]))), False)

    iptc = b"\x1c\x02\x50" + struct.pack(">H", len(NAME)) + NAME
    photoshop = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(NAME) + 1) + NAME + b"\0"
    xmp = b"<x:xmpmeta><dc:creator>" + NAME + b"</dc:creator></x:xmpmeta>"
    return {
        "xmp": lambda e, a: set_entry(e, a, 700, 1, len(xmp), xmp, False),
        "iptc": lambda e, a: set_entry(e, a, 33723, 7, len(iptc), iptc, False),
        "photoshop": lambda e, a: set_entry(e, a, 34377, 1, len(photoshop), photoshop, False),
        "subifd chain": subifd,
        "exif interop": interop,
    }


@pytest.mark.parametrize("place", list(_tiff_places()))
def test_tiff_places_already_safe(cli, tmp_path, place):
    import shutil

    from .fixtures.plant_rt2 import edit_entries

    (tmp_path / "src").mkdir()
    src = write_svs(tmp_path / "src" / "CASE-8301.svs", size=(512, 512), levels=1, with_label=False, with_macro=False).path
    clean = tmp_path / "clean.svs"
    shutil.copyfile(src, clean)
    edit_entries(src, 0, _tiff_places()[place])
    assert NAME in src.read_bytes()
    code, text, out = _run(cli, tmp_path, src, "native")
    assert code == 0, text  # removed by the closed world: the slide is shared without it
    code, _text, out = _run(cli, tmp_path, clean, "native")
    (svs,) = sorted(out.rglob("*.svs"))
    edit_entries(svs, 0, _tiff_places()[place])
    code, stdout, _ = cli("verify", str(svs))
    assert code == 1 and "closed-world-tags" in stdout and DNAME[:8] not in stdout, stdout


@pytest.mark.parametrize("place", ["comment", "processing instruction", "doctype entity", "cdata"])
def test_ventana_xmp_markup_already_safe(cli, tmp_path, monkeypatch, place):
    import tests.fixtures.bif_gen as bif_gen

    piece = {
        "comment": f"<!-- {DNAME} -->",
        "processing instruction": f"<?note {DNAME}?>",
        "cdata": f"<![CDATA[{DNAME}]]>",
    }
    original = bif_gen.iscan_xmp

    def planted(*a, **k):
        x = original(*a, **k)
        if place == "doctype entity":
            return x.replace(b"<iScan", f'<!DOCTYPE iScan [<!ENTITY n "{DNAME}">]><iScan'.encode(), 1)
        return x.replace(b"<AOI0", piece[place].encode() + b"<AOI0")

    monkeypatch.setattr(bif_gen, "iscan_xmp", planted)
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "CASE-8302.bif"
    bif_gen.make_bif(src)
    assert NAME in src.read_bytes()
    code, text, _out = _run(cli, tmp_path, src, "native")
    assert code == 0, text


def test_jfxx_thumbnail_in_a_tile_is_zeroed():
    import struct

    from wsianon.io.jpeg import scrub

    from .fixtures.plant_jpeg import noise_jpeg

    jpg = noise_jpeg(3, 16)
    thumb = b"\xff\xd8\xff\xfe" + struct.pack(">H", len(NAME) + 2) + NAME + b"\xff\xd9"
    app0 = b"JFXX\x00\x10" + thumb
    planted = jpg[:2] + b"\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0 + jpg[2:]
    clean, n = scrub(planted)
    assert n == 1 and NAME not in clean and len(clean) == len(planted)


@pytest.mark.parametrize("tag", [270, 305, 306])
def test_a_second_entry_of_a_kept_text_tag_is_refused(cli, tmp_path, tag):
    """An IFD holding ImageDescription / Software / DateTime twice (readers use one of them)."""
    import struct

    from .fixtures.plant_rt2 import edit_entries

    def second(ents, alloc):
        return ents + [[tag, 2, len(NAME) + 1, struct.pack("<I", alloc(NAME + b"\0")), bytes(4)]]

    (tmp_path / "src").mkdir()
    src = write_svs(tmp_path / "src" / "CASE-8303.svs", size=(512, 512), levels=1, with_label=False, with_macro=False).path
    code, _text, out = _run(cli, tmp_path, src, "native")
    (svs,) = sorted(out.rglob("*.svs"))
    edit_entries(svs, 0, second)
    assert NAME in svs.read_bytes()
    code, stdout, _ = cli("verify", str(svs))
    assert code == 1 and "closed-world-tags" in stdout and DNAME[:8] not in stdout, stdout
    edit_entries(src, 0, second)
    code, text, _out = _run(cli, tmp_path, src, "dicom")  # nothing planted reaches OUT (asserted by _run)
