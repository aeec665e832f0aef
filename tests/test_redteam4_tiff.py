"""Red team, round 4, native route (TIFF family) and ``wsianon verify`` of native outputs.

1. An ICC profile's lutAtoB / lutBtoA tags ('mAB ', 'mBA ') and multiProcessElements ('mpet') were
   kept whole: only the offsets inside them say which bytes a CMM reads, and nothing parsed them, so
   text after the last curve, in the padding between parts or anywhere no offset reaches went to OUT
   on both routes, and ``wsianon verify`` (closed-world-icc; the vocabulary check reads only an ICC
   profile's text tags) passed it.  Now ``io.icc.kept_ranges`` walks an mAB/mBA element to its
   curves' fields, its matrix and its CLUT's grid, precision and values; the converter keeps only
   those and the verifier refuses any other non-zero byte.  'mpet' (not parsed) is emptied with its
   tag signature.
2. Text the vocabulary check could not read: a kept NDPI property value (``Objective.Lens.Name``,
   ``ScanMode``: safe keys kept as the map had them) holding a name in Shift-JIS (Hamamatsu's
   software is Japanese) or Latin-1 gives no printable run of four characters; in UTF-8, "山田 太郎"
   is a run whose tokens passed for being two characters long.  All three reached OUT, verified.
   The same names in an MRXS Slidedat.ini safe key (OBJECTIVE_NAME, CAMERA_TYPE): Shift-JIS makes
   the file non-UTF-8, read as Windows-1252 it is "ŽR“c ‘¾˜Y", tokens of two characters.
   Now a TIFF text value (ASCII entries and XMP) must be UTF-8 and its non-ASCII tokens vocabulary
   however short, only ASCII tokens pass for being one or two characters long, and the NDPI and
   MRXS converters keep a safe key's value only when it is printable ASCII.
3. A name written as escaped bytes in a kept text value — percent-encoded ("%44%6F%65%5E…", as
   URLs and XML attributes carry it, nested too), backslash escapes ("\\x44\\x6F…") or hex pairs
   set apart ("44 6F 65 5E 4A 61 6E 65") — is tokens of two characters, which pass: it reached OUT,
   verified.  Now the vocabulary check judges such text as it reads (``_unescape_bytes``).
4. An ICC curve's points ('curv') and a LUT's input and output tables ('mft1', 'mft2', the curves of
   'mAB '/'mBA ') were kept as they were and read as text by no check: "RTQX7 Doe^Jane MRN4711" as a
   tone curve reached OUT on both routes, verified.  Real curves and tables are ramps (one
   direction); now one that turns back by more than 1/64 of its range is emptied by the converter and
   refused by the verifier (``io.icc._ramp``).  A CLUT's values (a grid of colours) are still kept
   as they are (README, Limitations).
5. ``thumbnail-provenance`` compared grey only: the slide's own thumbnail with "DOE JANE" written
   in large letters in colours of the picture's own luma (only the colour differs; legible) had
   the slide's grey exactly and passed, native and in ``wsianon verify``.  Now the two colour
   differences (Cb, Cr) are judged as the grey is, by the same rule.
"""

from __future__ import annotations

import json
import io
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from wsianon.io import icc
from wsianon.profiles import load
from wsianon.verify.partition import icc_problems

from .test_redteam2_tiff import TEXT, TOKEN, _failed_checks, _placed, _run
from .test_redteam3_tiff import _svs

SAFE = {t.encode("latin-1") for t in load("tiff_closed_world")["icc_safe_types"]}


def kept_alike(clean: bytes) -> bool:
    """``clean`` (a hand-built profile of colorimetric tags only) keeps every tag's fields byte for
    byte through ``icc.sanitize``, which rebuilds it (table sorted, sizes exact, packed: a hand-built
    layout is not that form, so ``clean`` itself is judged by its rebuild); the rebuild passes and
    is its own rebuild."""
    out = icc.sanitize(clean, compact=True)[0]
    src = {s: clean[o : o + n] for s, o, n in icc.parse(clean) or []}
    got = {s: out[o : o + n] for s, o, n in icc.parse(out) or []}
    same = set(src) == set(got) and all(src[s][: len(got[s])] == got[s] and not src[s][len(got[s]) :].strip(b"\0") for s in src)
    return same and icc_problems(out, SAFE, exact=True) == 0 and icc.sanitize(out, compact=True)[0] == out


WTPT = b"XYZ " + bytes(4) + struct.pack(">iii", 63190, 65536, 54061)
IDENTITY = b"curv" + bytes(8)  # a curve of no points: identity, 12 bytes


def _profile(tags: list[tuple[bytes, bytes]], space: bytes = b"RGB ", pcs: bytes = b"XYZ ") -> bytes:
    from .fixtures.helpers import icc_profile

    return icc_profile(tags, b"\x04\x20", space, pcs)


def _mab(hide: bytes = b"") -> bytes:
    """A 3-in 3-out lutAtoB: A curves, a 2x2x2 CLUT, M curves, matrix, B curves; ``hide`` is
    written where no offset reaches: after the B curves, between parts, in the CLUT's unused grid
    bytes and its padding."""
    pad = hide[:4].ljust(4, b"\0") if hide else bytes(4)
    a = 32
    clut = a + 3 * 12 + len(pad)
    grid = bytes([2, 2, 2]) + (hide[4:17].ljust(13, b"\0") if hide else bytes(13))
    lut = grid + bytes([1]) + (hide[:3].ljust(3, b"\0") if hide else bytes(3)) + bytes(range(24))
    m = clut + len(lut)
    matrix_at = m + 3 * 12
    b = matrix_at + 48
    head = b"mAB " + bytes(4) + bytes([3, 3, 0, 0]) + struct.pack(">5I", b, matrix_at, m, clut, a)
    matrix = struct.pack(">12i", 65536, 0, 0, 0, 65536, 0, 0, 0, 65536, 0, 0, 0)
    return head + IDENTITY * 3 + pad + lut + IDENTITY * 3 + matrix + IDENTITY * 3 + hide


def test_an_icc_lut_keeps_only_the_fields_its_offsets_reach():
    """The converter keeps, and the verifier allows, only an mAB/mBA element's fields; a real v4
    profile built of them (ICC's sRGB v4 preference profile, shipped with highdicom) transforms
    colours as before, and its kept bytes pass."""
    from PIL import Image, ImageCms

    planted = _profile([(b"wtpt", WTPT), (b"A2B0", _mab(TEXT))])
    assert icc_problems(planted, SAFE) > 0
    out, _ = icc.sanitize(planted)
    assert icc_problems(out, SAFE) == 0 and TOKEN.encode() not in out and b"Doe^" not in out and b"MRN" not in out
    clean = _profile([(b"wtpt", WTPT), (b"A2B0", _mab())])
    assert kept_alike(clean)  # every field kept

    real = (resources.files("highdicom") / "_icc_profiles" / "sRGB_v4_ICC_preference.icc").read_bytes()
    kept, _ = icc.sanitize(real)
    assert icc_problems(kept, SAFE) == 0
    assert {real[o : o + 4] for _s, o, _n in icc.parse(real)} >= {b"mAB ", b"mBA "}
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    lab = ImageCms.createProfile("LAB")
    for intent in (0, 1):  # perceptual (A2B0: mAB) and relative colorimetric (A2B1)
        same = [
            np.asarray(ImageCms.profileToProfile(img, ImageCms.ImageCmsProfile(io.BytesIO(p)), lab, renderingIntent=intent, outputMode="LAB"))
            for p in (real, kept)
        ]
        assert np.array_equal(*same)


def test_an_mpet_tag_is_emptied_with_its_signature():
    mpet = b"mpet" + bytes(4) + struct.pack(">HHI", 3, 3, 0) + TEXT
    out, emptied = icc.sanitize(_profile([(b"wtpt", WTPT), (b"D2B0", mpet)]))
    assert emptied >= 1 and TOKEN.encode() not in out and b"D2B0" not in out
    assert icc_problems(_profile([(b"wtpt", WTPT), (b"D2B0", mpet)]), SAFE) > 0


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_text_in_an_icc_lut_never_reaches_out(cli, tmp_path, target):
    (tmp_path / "src").mkdir()
    prof = _profile([(b"wtpt", WTPT), (b"A2B0", _mab(TEXT))])
    src = _svs(tmp_path / "src" / "CASE-7601.svs", extratags=[(34675, 7, len(prof), prof, True)])
    code, text, out = _run(cli, tmp_path, src, target)  # asserts no planted text in OUT or on the console
    assert code == 0 and _placed(out), text


def test_verify_refuses_text_in_an_icc_lut_of_another_tools_output(cli, tmp_path):
    """Another tool's output: its ICC profile's A2B0 holds text after its last curve."""
    (tmp_path / "src").mkdir()
    prof = _profile([(b"wtpt", WTPT), (b"A2B0", _mab(bytes(len(TEXT))))])
    src = _svs(tmp_path / "src" / "CASE-7602.svs", extratags=[(34675, 7, len(prof), prof, True)])
    code, text, out = _run(cli, tmp_path, src)
    (slide,) = _placed(out)
    assert code == 0 and _failed_checks(cli, slide) == set(), text
    data = bytearray(slide.read_bytes())
    at = data.index(prof[: 128 - 28][36:40]) - 36  # the kept profile ('acsp' at 36)
    end = at + len(prof)
    data[end - len(TEXT) : end] = TEXT
    other = tmp_path / "other.svs"
    other.write_bytes(bytes(data))
    assert "closed-world-icc" in _failed_checks(cli, other)


# --- 2. text the vocabulary check could not read ---------------------------------------------

VALUES = {
    "shift-jis": "山田 太郎".encode("shift_jis"),
    "latin-1": "Jöns Åsa Öst".encode("latin-1"),
    "utf-8": "山田 太郎".encode(),
}


@pytest.mark.parametrize("enc", list(VALUES))
def test_a_name_in_a_kept_ndpi_property_never_reaches_out(cli, tmp_path, enc):
    from .fixtures.ndpi_gen import make_ndpi

    val = VALUES[enc]
    text = val.decode("latin-1")  # the fixture writes its values byte for byte
    src, _ = make_ndpi(tmp_path / "src" / "CASE-7603.ndpi", canaries={"PropertyMap:Objective.Lens.Name": text, "PropertyMap:ScanMode": text})
    code, out_text, out = _run(cli, tmp_path, src)
    hits = [p.name for p in out.rglob("*") if p.is_file() and (val in p.read_bytes() or val[:4] in p.read_bytes())]
    assert hits == [] and code == 0 and _placed(out), out_text


@pytest.mark.parametrize("enc", list(VALUES))
def test_verify_reads_a_text_value_as_its_reader_decodes_it(cli, tmp_path, enc):
    """Another tool's NDPI output whose kept AutoFocus.AFMethod value is a 2-character name."""
    from .fixtures.ndpi_gen import make_ndpi

    src, _ = make_ndpi(tmp_path / "src" / "CASE-7604.ndpi", canaries={})
    code, text, out = _run(cli, tmp_path, src)
    (slide,) = _placed(out)
    assert code == 0 and _failed_checks(cli, slide) == set(), text
    name = {"shift-jis": "山田".encode("shift_jis"), "latin-1": "Åsa ".encode("latin-1"), "utf-8": "山 ".encode()}[enc]
    data = slide.read_bytes()
    assert data.count(b"AutoFocus.AFMethod=AUTO") == 1
    other = tmp_path / "other.ndpi"
    other.write_bytes(data.replace(b"AFMethod=AUTO", b"AFMethod=" + name))
    assert "vocabulary" in _failed_checks(cli, other)


def test_short_tokens_of_name_scripts_are_judged():
    from wsianon.verify.vocabulary import unknown_tokens, vocabulary

    vocab = vocabulary("ndpi")
    assert unknown_tokens("山田 太郎", vocab) == ["山田", "太郎"]
    assert unknown_tokens("김 민", vocab) and unknown_tokens("やま", vocab)
    assert unknown_tokens("山田 太郎".encode("shift_jis").decode("cp1252"), vocab)  # "ŽR“c ‘¾˜Y"
    assert unknown_tokens("20x x y Ab", vocab) == []  # short Latin tokens still pass as structure


def _mrxs_with(tmp_path: Path, val: bytes | None) -> Path:
    from .fixtures.mrxs_gen import make_mrxs

    info = make_mrxs(tmp_path / "src", "CASE-7605")
    if val is not None:
        ini = info.mrxs.with_suffix("") / "Slidedat.ini"
        raw = ini.read_bytes()
        assert b"Plan-Apochromat" in raw and b"AxioCam Mrm Rev.3" in raw
        ini.write_bytes(raw.replace(b"Plan-Apochromat", val).replace(b"AxioCam Mrm Rev.3", val))
    return info.mrxs


@pytest.mark.parametrize("enc", list(VALUES))
def test_a_name_in_a_kept_slidedat_value_never_reaches_out(cli, tmp_path, enc):
    val = VALUES[enc]
    code, text, out = _run(cli, tmp_path, _mrxs_with(tmp_path, val))
    hits = [p.name for p in out.rglob("*") if p.is_file() and val[:4] in p.read_bytes()]
    assert hits == [] and code == 0 and list(out.glob("*.mrxs")), text


def test_verify_reads_a_slidedat_value_as_its_reader_decodes_it(cli, tmp_path):
    """Another tool's MRXS output whose kept OBJECTIVE_NAME is a Shift-JIS name."""
    code, text, out = _run(cli, tmp_path, _mrxs_with(tmp_path, None))
    (slide,) = out.glob("*.mrxs")
    assert code == 0 and _failed_checks(cli, slide) == set(), text
    ini = slide.with_suffix("") / "Slidedat.ini"
    ini.write_bytes(ini.read_bytes().replace(b"Plan-Apochromat", VALUES["shift-jis"]))
    assert "vocabulary" in _failed_checks(cli, slide)


# --- 3. escaped bytes ---------------------------------------------------------------------------

ESCAPED = [
    "%44%6F%65%5E%4A%61%6E%65",
    "%2544%256F%2565%255E%254A%2561%256E%2565",
    "\\x44\\x6F\\x65\\x5E\\x4A\\x61\\x6E\\x65",
    "44 6F 65 5E 4A 61 6E 65",
    "44:6f:65:5e:4a:61:6e:65",
]


def test_escaped_bytes_are_judged_as_the_text_they_spell():
    from wsianon.verify.vocabulary import unknown_tokens, vocabulary

    vocab = vocabulary("ndpi")
    for text in ESCAPED:
        assert unknown_tokens(text, vocab), text
    # what is no spelled text still passes: a percentage, bytes that are no name, a MAC address
    for text in ("Q=70% 20x", "00 11 22 33 44 55 66 77 88", "ScanMode=AUTO", "00:1b:63:84:45:e6"):
        assert unknown_tokens(text, vocab) == [], text


@pytest.mark.parametrize("text", ESCAPED[:1] + ESCAPED[2:4])
def test_an_escaped_name_in_a_kept_value_is_not_verified(cli, tmp_path, text):
    from .fixtures.ndpi_gen import make_ndpi

    src, _ = make_ndpi(tmp_path / "src" / "CASE-7606.ndpi", canaries={"PropertyMap:Objective.Lens.Name": text})
    key = tmp_path / "key"
    key.write_text("ab" * 32)
    key.chmod(0o600)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "native", str(src), "-o", str(out), "--key-file", str(key))
    placed = [p.name for p in out.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]
    # the safe key keeps a value only as vocabulary (fp6): the escaped name is judged as the text it
    # spells, so the key leaves the property map and the slide is shared without it — as the MRXS
    # case above (before: the value was kept and the vocabulary check quarantined the slide)
    removed = {r["name"] for s in json.loads((out / "wsianon-report.json").read_text())["slides"] for r in s["removed"]}
    assert placed == [] and code == 0 and list(out.glob("*.ndpi")), stdout + stderr
    assert "tag 65449 PropertyMap:Objective.Lens.Name" in removed


# --- 4. curve and LUT table values -------------------------------------------------------------


def _curve(values: bytes) -> bytes:
    return b"curv" + bytes(4) + struct.pack(">I", len(values) // 2) + values


RAMP = struct.pack(">12H", *range(0, 65535, 5500))  # 12 points, rising
TEXT_CURVE = TEXT[:24].ljust(24, b" ")  # 12 points spelling "RTQX7 Doe^Jane MRN4711"


def test_icc_curves_and_lut_tables_must_be_ramps():
    from PIL import Image, ImageCms

    for planted in (
        _profile([(b"wtpt", WTPT), (b"rTRC", _curve(TEXT_CURVE))]),
        _profile([(b"wtpt", WTPT), (b"A2B0", b"mft1" + bytes(4) + bytes([3, 3, 2, 0]) + bytes(36) + (TEXT * 12)[:768] + bytes(24) + bytes(range(256)) * 3)]),
        _profile([(b"wtpt", WTPT), (b"A2B0", _mab().replace(IDENTITY, _curve(TEXT_CURVE), 1))]),
    ):
        assert icc_problems(planted, SAFE) > 0
        out, _ = icc.sanitize(planted)
        assert icc_problems(out, SAFE) == 0 and TOKEN.encode() not in out and b"Doe^" not in out
    falling = struct.pack(">12H", *range(65535, 0, -5500))
    clean = _profile([(b"wtpt", WTPT), (b"rTRC", _curve(RAMP)), (b"gTRC", _curve(falling))])
    assert kept_alike(clean)
    # real curves (4096 points) and LUT tables (PIL's Lab profile: mft2) are ramps: kept, same colours
    crayons = (resources.files("pydicom") / "data" / "test_files" / "crayons.icc").read_bytes()
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    for real in (crayons, lab):
        kept, _ = icc.sanitize(real)
        assert icc_problems(kept, SAFE) == 0
        moved = {s: (o, n) for s, o, n in icc.parse(kept[: struct.unpack(">I", kept[:4])[0]]) or []}  # rebuilt: tags move
        for sig, off, size in icc.parse(real):
            if real[off : off + 4] in (b"curv", b"mft2"):
                o, n = moved[sig]
                assert kept[o + 8 : o + n] == real[off + 8 : off + n] and not real[off + n : off + size].strip(b"\0"), sig
    srgb = ImageCms.createProfile("sRGB")
    same = [np.asarray(ImageCms.profileToProfile(img, ImageCms.ImageCmsProfile(io.BytesIO(p)), srgb)) for p in (crayons, icc.sanitize(crayons)[0])]
    assert np.array_equal(*same)


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_text_in_an_icc_curve_never_reaches_out(cli, tmp_path, target):
    (tmp_path / "src").mkdir()
    prof = _profile([(b"wtpt", WTPT), (b"rTRC", _curve(TEXT_CURVE))])
    src = _svs(tmp_path / "src" / "CASE-7607.svs", extratags=[(34675, 7, len(prof), prof, True)])
    code, text, out = _run(cli, tmp_path, src, target)  # asserts no planted text in OUT or on the console
    assert code == 0 and _placed(out), text


def test_verify_refuses_text_in_an_icc_curve_of_another_tools_output(cli, tmp_path):
    (tmp_path / "src").mkdir()
    prof = _profile([(b"wtpt", WTPT), (b"rTRC", _curve(RAMP))])
    src = _svs(tmp_path / "src" / "CASE-7608.svs", extratags=[(34675, 7, len(prof), prof, True)])
    code, text, out = _run(cli, tmp_path, src)
    (slide,) = _placed(out)
    assert code == 0 and _failed_checks(cli, slide) == set(), text
    data = slide.read_bytes()
    assert data.count(RAMP) == 1
    other = tmp_path / "other.svs"
    other.write_bytes(data.replace(RAMP, TEXT_CURVE))
    assert "closed-world-icc" in _failed_checks(cli, other)


# --- 5. a name in the thumbnail's colours only ---------------------------------------------------


def _iso_name(thumb: np.ndarray) -> np.ndarray:
    """``thumb`` with "DOE JANE" in large letters whose luma is the picture's own: only Cb/Cr change."""
    from .fixtures.helpers import iso_name

    return iso_name(thumb, (thumb.shape[1] // 4, thumb.shape[0] // 4), (2, 2))


def test_a_name_in_the_thumbnails_colours_only_is_refused(cli, tmp_path):
    import openslide

    from wsianon.pipeline.model import Verdict
    from wsianon.verify import thumbnail

    from .fixtures.svs_gen import write_svs

    def svs(name: str, thumb=None) -> Path:
        (tmp_path / name).mkdir()
        return write_svs(tmp_path / name / "CASE-7609.svs", size=(1024, 768), levels=2, with_label=False, with_macro=False, thumbnail=thumb).path

    clean = svs("clean")
    with openslide.OpenSlide(str(clean)) as s:
        own = np.asarray(s.associated_images["thumbnail"].convert("RGB"))
    planted = svs("planted", _iso_name(own))
    results = {}
    for label, path in (("clean", clean), ("planted", planted)):
        v = Verdict()
        with openslide.OpenSlide(str(path)) as s:
            img = s.associated_images["thumbnail"]
            shape = thumbnail.grid_shape(img.size)
            ref = thumbnail.openslide_reference(s, shape)
            grey = thumbnail.measures(thumbnail.prepare(np.asarray(img.convert("RGB")), shape)[0], ref[0])
            thumbnail.check_openslide(s, v)
        results[label] = ([c.ok for c in v.checks], thumbnail.matches(grey))
    assert results == {"clean": ([True], True), "planted": ([False], True)}  # the planted one's grey is the slide's
    assert _failed_checks(cli, planted) >= {"thumbnail-provenance"}
