"""Red team, TIFF family: identifiers hidden where earlier checks did not look.

1. Names the source chose (an Aperio ImageDescription key, a Leica element or attribute name, an
   NDPI property key, a Ventana iScan attribute name, a Philips Attribute Name) were printed in
   OUT's report (JSON and HTML) as "what was removed", and by ``wsianon verify`` on the console.
   Now every word of such a name must be vocabulary (``wsianon.verify.reportnames``); any other
   word is ``[withheld]``.
2. Bytes inside a JPEG tile's entropy-coded data after its last coded unit (decoders skip them,
   the picture is unchanged, tile identity with the source holds) reached OUT verified on both
   routes.  Now every JPEG tile/strip/frame must be coded tightly (``wsianon.verify.ecs``,
   ``tiles-coded-tight`` / ``dicom: entropy tight``): such a slide is quarantined.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest

from wsianon.verify.ecs import SAMPLE, check_tiff, judge, sample_indices
from wsianon.verify.reportnames import WITHHELD, safe_name

from .conftest import BUNDLED
from .fixtures.plant_jpeg import noise_jpeg, plant_tiff_jpeg
from .fixtures.plant_rt import ecs_text, edit_text_tag
from .fixtures.plant_rt2 import rewrite_level0_tiles
from .fixtures.svs_gen import write_svs

TOKEN = "RTQN7K"
NAME = "Doe^Jane"
KEY = "ab" * 32


def _key(tmp_path: Path) -> Path:
    k = tmp_path / "key"
    k.write_text(KEY)
    k.chmod(0o600)
    return k


def _hits(folder: Path, *texts: str) -> list[str]:
    out = []
    for p in folder.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            for t in (TOKEN, NAME, "DoeJane"):
                if t.encode() in data or t.encode("utf-16-le") in data:
                    out.append(f"{t}@{p.name}")
    return out + [f"{t}@console" for t in (TOKEN, NAME, "DoeJane") for x in texts if t in x]


@pytest.fixture(scope="module")
def named(tmp_path_factory) -> dict[str, Path]:
    """Slides whose source carries an identifier as a NAME (key, element, attribute)."""
    from .fixtures.bif_gen import make_bif
    from .fixtures.ndpi_gen import make_ndpi_info
    from .fixtures.philips_gen import make_philips
    from .fixtures.scn_gen import make_scn

    d = tmp_path_factory.mktemp("named")
    svs = write_svs(d / "a.svs").path
    edit_text_tag(svs, 0, 270, lambda r: r + f"|{TOKEN} {NAME} = 1".encode())
    scn = make_scn(d / "b.scn").path
    edit_text_tag(
        scn,
        0,
        270,
        lambda r: r.replace(b"<userData>", f"<{TOKEN}DoeJane>x</{TOKEN}DoeJane><userData>".encode(), 1).replace(
            b"<image name=", f'<image {TOKEN}DoeJane="1" name='.encode(), 1
        ),
    )
    ndpi = make_ndpi_info(d / "c.ndpi").path
    edit_text_tag(ndpi, 0, 65449, lambda r: r + f"{TOKEN} {NAME}=1\r\n".encode())
    bif = make_bif(d / "d.bif").path
    edit_text_tag(bif, 0, 700, lambda r: r.replace(b"<iScan ", f'<iScan {TOKEN}DoeJane="1" '.encode(), 1), typ=1)
    ph = make_philips(d / "e.tiff").path
    attr = f'<Attribute Name="{TOKEN} {NAME}" Group="0x301D" Element="0x1001" PMSVR="IString">x</Attribute>'
    edit_text_tag(
        ph, 0, 270, lambda r: r.replace(b'<Attribute Name="DICOM_ACQUISITION_DATETIME"', attr.encode() + b'<Attribute Name="DICOM_ACQUISITION_DATETIME"', 1)
    )
    return {"aperio": svs, "leica": scn, "ndpi": ndpi, "ventana": bif, "philips": ph}


def test_names_a_source_chose_never_reach_the_record(cli, named, tmp_path):
    srcs = list(named.values())
    assert all(TOKEN.encode() in p.read_bytes() for p in srcs)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "native", *map(str, srcs), "-o", str(out), "--key-file", str(_key(tmp_path)))
    report = json.loads((out / "wsianon-report.json").read_text())
    assert len(report["slides"]) == len(srcs)
    assert _hits(out, stdout, stderr) == []
    status = {s["format"]: s["status"] for s in report["slides"]}
    # the names are removed from the outputs as before (Leica and NDPI placed, the others quarantined
    # by the vocabulary check of the name left in the text); the record says where, never what
    assert status["leica"] == "ok" and status["ndpi"] == "ok", status
    for s in report["slides"]:
        assert any(WITHHELD in r["name"] for r in s["removed"]), s["format"]
        # names made of vocabulary stay readable
        assert any(WITHHELD not in r["name"] and r["name"] for r in s["removed"]), s["format"]
    placed = [p for p in out.iterdir() if p.suffix in (".scn", ".ndpi")]
    assert len(placed) == 2


@pytest.mark.parametrize("fmt", ["aperio", "ventana", "philips"])
def test_verify_prints_no_name_a_source_chose(cli, named, fmt):
    code, stdout, stderr = cli("verify", "--json", str(named[fmt]))
    assert code == 1
    assert TOKEN not in stdout + stderr and "DoeJane" not in stdout + stderr and NAME not in stdout + stderr
    assert WITHHELD in stdout  # the profile check still says a non-safe name carries a value


@pytest.mark.parametrize("fmt", ["aperio", "leica", "ndpi"])
def test_inspect_and_dry_run_print_no_name_a_source_chose(cli, named, fmt, tmp_path):
    for args in (("inspect", "--json"), ("inspect",), ("run", "--dry-run", "--target", "native", "-o", str(tmp_path / "o"), "--key-file", str(_key(tmp_path)))):
        code, stdout, stderr = cli(*args, str(named[fmt]))
        assert TOKEN not in stdout + stderr and "DoeJane" not in stdout + stderr and NAME not in stdout + stderr, args
        if args[0] == "inspect":
            assert code == 0 and WITHHELD in stdout


def test_safe_name_keeps_vocabulary_and_withholds_the_rest():
    assert safe_name("ImageDescription:ScanScope ID") == "ImageDescription:ScanScope ID"
    assert safe_name("XML PIIM_DP_SCANNER_OPERATOR_ID") == "XML PIIM_DP_SCANNER_OPERATOR_ID"
    assert safe_name("tag 65449 PropertyMap:NDP.S/N") == "tag 65449 PropertyMap:NDP.S/N"
    assert safe_name(f"ImageDescription:{TOKEN} {NAME}") == f"ImageDescription:{WITHHELD} {WITHHELD}^{WITHHELD}"
    # zero-width characters do not split a name into harmless parts; other scripts are withheld
    assert safe_name("Ja\u200bne") == WITHHELD
    assert safe_name("ＪａｎｅDoe") == WITHHELD and safe_name("Jаnе") == WITHHELD


def test_judge_finds_every_byte_after_the_last_coded_unit():
    from PIL import Image

    from .fixtures.ndpi_gen import _jpeg_with_restarts, tissue

    for seed, size in ((0, 16), (1, 64), (2, 256)):
        jpg = noise_jpeg(seed, size)
        assert judge(jpg) is None
        for n in range(1, 9):  # the decoder's read-ahead alone misses up to ~6 of these
            assert judge(jpg[:-2] + b"J" * n + jpg[-2:]) is not None, (seed, size, n)
        assert judge(jpg[:-2] + b"Jane") is not None  # no EOI: read as padding
    b = io.BytesIO()
    Image.new("RGB", (128, 128), (200, 100, 50)).save(b, "JPEG", progressive=True)
    prog = b.getvalue()
    assert judge(prog) is None
    sos = prog.find(b"\xff\xda")
    nxt = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]").search(prog, sos + 2 + int.from_bytes(prog[sos + 2 : sos + 4], "big")).start()
    assert judge(prog[:nxt] + b"Doe" + prog[nxt:]) is not None  # the end of a scan that is not the last
    rst = _jpeg_with_restarts(tissue(256, 128), 2)
    assert judge(rst) is None
    m = rst.find(b"\xff\xd0")
    assert judge(rst[:m] + b"D" + rst[m:]) is not None  # before a restart marker


class _Verdict:
    def __init__(self):
        self.checks, self.findings = [], []

    def add(self, name, ok, detail="", not_run=False):
        self.checks.append((name, ok, detail))


def test_real_aperio_tiles_are_tight():
    from .conftest import shared

    v = _Verdict()
    check_tiff(BUNDLED / "CMU-1-Small-Region.svs", v)  # JPEGTables-abbreviated tiles of a real scanner
    assert v.checks and v.checks[0][:2] == ("tiles-coded-tight", True) and not v.findings, v.checks
    v = _Verdict()
    check_tiff(shared("aperio/histolab_tcga-cr-7395-01a-01-ts1.svs"), v)  # Kakadu JPEG 2000 tiles (33005)
    assert v.checks[0][:2] == ("tiles-coded-tight", True) and "363 tile" in v.checks[0][2], v.checks


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_text_in_entropy_coded_data_fails_closed(cli, tmp_path, target):
    (tmp_path / "src").mkdir()
    src = write_svs(tmp_path / "src" / "CASE-7311.svs").path
    assert plant_tiff_jpeg(src, f"{TOKEN} {NAME}", tables=False, edit=ecs_text) > 5
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", target, str(src), "-o", str(out), "--key-file", str(_key(tmp_path)))
    check = "tiles-coded-tight" if target == "native" else "dicom: entropy tight"
    assert code != 0 and f"failed: {check}" in stdout + stderr
    assert _hits(out, stdout, stderr) == []
    assert not list(out.rglob("*.svs")) and not list(out.rglob("*.dcm"))
    if target == "native":  # without a source, ``verify`` finds it too
        vcode, vout, _ = cli("verify", "--json", str(src))
        failed = {c["check"] for c in json.loads(vout)[0]["checks"] if not c["ok"]}
        assert vcode == 1 and "tiles-coded-tight" in failed


def test_sample_indices_spread_over_the_level():
    assert sample_indices(10, False).tolist() == list(range(10))  # a small level: every tile
    pick = sample_indices(1000, False).tolist()
    assert len(pick) == SAMPLE and pick[0] == 0 and pick[-1] == 999 and pick == sorted(set(pick))
    assert max(b - a for a, b in zip(pick, pick[1:])) <= 1000 // (SAMPLE - 1) + 1  # evenly spread
    assert sample_indices(1000, True).tolist() == list(range(1000))


def test_coded_data_all_judges_the_tile_the_sample_leaves_out(cli, tmp_path):
    """Text after the coded units of ONE level-0 tile that the default sample does not decode:
    ``--coded-data all`` fails the slide (run quarantines it, verify says NOT CLEAN); the default
    says honestly how many tiles it judged."""
    (tmp_path / "src").mkdir()
    src = write_svs(tmp_path / "src" / "CASE-7312.svs", size=(2048, 2048)).path  # 64 level-0 tiles
    seen: list[int] = []

    def second_tile_only(data: bytes, token: str) -> bytes:
        if data[-2:] != b"\xff\xd9" or len(data) < 200:
            return data
        seen.append(1)
        return ecs_text(data, token) if len(seen) == 2 else data

    plant_tiff_jpeg(src, f"{TOKEN} {NAME}", tables=False, edit=second_tile_only)
    assert 1 not in sample_indices(64, False)  # level 0's second tile is not in the sample

    def tight(*args: str) -> tuple[int, dict]:
        code, out, _ = cli("verify", "--json", *args, str(src))
        return code, next(c for c in json.loads(out)[0]["checks"] if c["check"] == "tiles-coded-tight")

    _, c = tight()
    m = re.match(rf"(\d+) of (\d+) tile\(s\)/strip\(s\) \(up to {SAMPLE} a level", c["detail"])
    assert c["ok"] is True and m and int(m[1]) < int(m[2]), c
    _, c = tight("--coded-data", "all")
    assert c["ok"] is False, c
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "native", "--coded-data", "all", str(src), "-o", str(out), "--key-file", str(_key(tmp_path)))
    assert code != 0 and "failed: tiles-coded-tight" in stdout + stderr
    assert not list(out.rglob("*.svs")) and _hits(out, stdout, stderr) == []
    assert json.loads((out / "wsianon-report.json").read_text())["policy"]["coded_data"] == "all"


def _deflate_tiff(path: Path, tail: bytes = b"") -> Path:
    """A generic pyramid TIFF with Deflate tiles; ``tail`` appended inside every level-0 tile's count."""
    import numpy as np
    import tifffile

    img = np.zeros((512, 512, 3), np.uint8)
    img[..., 1] = np.arange(512, dtype=np.uint8)[None, :] // 2
    with tifffile.TiffWriter(path) as tw:
        tw.write(img, tile=(256, 256), compression="zlib", photometric="rgb")
        tw.write(img[::2, ::2], tile=(256, 256), compression="zlib", photometric="rgb", subfiletype=1)
    if tail:
        rewrite_level0_tiles(path, lambda blob: blob + tail)
    return path


def test_text_after_a_deflate_stream_fails_closed(cli, tmp_path):
    from wsianon.verify.ecs import judge_deflate, judge_lzw

    (tmp_path / "src").mkdir()
    src = _deflate_tiff(tmp_path / "src" / "CASE-7312.tif", f"{TOKEN} {NAME}".encode())
    assert src.read_bytes().count(TOKEN.encode()) == 4
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "native", "--allow-generic", str(src), "-o", str(out), "--key-file", str(_key(tmp_path)))
    assert code != 0 and "failed: tiles-coded-tight" in stdout + stderr
    assert _hits(out, stdout, stderr) == [] and not list(out.rglob("*.tif"))
    # a clean one is placed
    clean = _deflate_tiff(tmp_path / "src" / "CASE-7313.tif")
    out2 = tmp_path / "out2"
    code, stdout, stderr = cli("run", "--target", "native", "--allow-generic", str(clean), "-o", str(out2), "--key-file", str(_key(tmp_path)))
    assert code == 0, stdout + stderr
    # the LZW walk: the codes up to EOI use every byte (zero padding after it carries nothing)
    import imagecodecs
    import numpy as np

    raw = (np.arange(64 * 300 * 3) % 7).astype(np.uint8).tobytes()
    lzw = imagecodecs.lzw_encode(raw)
    assert judge_lzw(lzw, len(raw)) is None and judge_lzw(lzw + b"\0", len(raw)) is None
    assert judge_lzw(lzw + b"J", len(raw)) is not None and judge_lzw(lzw, len(raw) - 1) is not None
    import zlib

    assert judge_deflate(zlib.compress(raw), len(raw)) is None and judge_deflate(zlib.compress(raw) + b"J", len(raw)) is not None


def test_a_clean_real_svs_is_placed_with_the_check(cli, tmp_path):
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "CMU-1.svs"
    shutil.copy(BUNDLED / "CMU-1-Small-Region.svs", src)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "native", str(src), "-o", str(out), "--key-file", str(_key(tmp_path)))
    assert code == 0, stdout + stderr
    s = json.loads((out / "wsianon-report.json").read_text())["slides"][0]
    checks = {c["check"]: c["ok"] for c in s["verification"]["checks"]}
    assert checks.get("tiles-coded-tight") is True


def test_a_kept_philips_macro_with_text_after_its_coded_units_fails_closed(cli, tmp_path):
    """The macro kept in the Philips XML (``--macro keep``) is base64 JPEG: judged like a tile."""
    import base64

    from .fixtures.philips_gen import make_philips

    (tmp_path / "src").mkdir()
    src = make_philips(tmp_path / "src" / "CASE-7314.tiff").path

    def plant(xml: bytes) -> bytes:
        text = xml.decode()
        i = text.find(">MACROIMAGE<")
        start, end = text.rfind("<DataObject", 0, i), text.find("</DataObject>", i)
        m = re.search(r'(Name="PIM_DP_IMAGE_DATA"[^>]*>)([^<]+)<', text[start:end])
        jpg = base64.b64decode(m.group(2))
        new = base64.b64encode(ecs_text(jpg, f"{TOKEN} {NAME}")).decode()
        return (text[: start + m.start(2)] + new + text[start + m.end(2) :]).encode()

    edit_text_tag(src, 0, 270, plant)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "native", "--macro", "keep", str(src), "-o", str(out), "--key-file", str(_key(tmp_path)))
    assert code != 0 and "vocabulary" in stdout + stderr
    assert not list(out.rglob("*.tiff"))
    b64 = {base64.b64encode(b"\0" * a + TOKEN.encode())[4:10] for a in range(3)}
    assert not any(f in p.read_bytes() for p in out.rglob("*") if p.is_file() for f in b64)


def _j2k_svs(path: Path, edit=None) -> Path:
    """An Aperio SVS with JPEG 2000 (33005) level tiles; ``edit`` rewrites every level-0 tile."""
    import numpy as np
    import tifffile

    img = np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    banner = "Aperio Image Library v12.0.15"
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            img,
            tile=(256, 256),
            compression=33005,
            photometric="rgb",
            description=f"{banner}\r\n512x512 (256x256) J2K/KDU Q=70|AppMag = 20|MPP = 0.5",
            metadata=None,
        )
        tw.write(
            img[::4, ::4], compression="jpeg", photometric="rgb", description=f"{banner}\n512x512 -> 128x128 - |AppMag = 20", metadata=None, rowsperstrip=128
        )
    if edit is not None:
        rewrite_level0_tiles(path, edit)
    return path


def _j2k_comment(data: bytes) -> bytes:
    import struct

    i = data.find(b"\xff\x90")  # before the first tile-part: the end of the main header
    payload = b"\x00\x01" + f"{TOKEN} {NAME}".encode()
    return data[:i] + b"\xff\x64" + struct.pack(">H", len(payload) + 2) + payload + data[i:]


@pytest.mark.parametrize("kind,target", [("after-eoc", "native"), ("comment", "native"), ("comment", "dicom"), ("after-eoc", "dicom")])
def test_text_in_a_jpeg2000_codestream_fails_closed(cli, tmp_path, kind, target):
    """Native: the tile is the source's (tile identity), so the slide is quarantined.  DICOM: the
    frame scrub zeroes a codestream's comment payload and the bytes after EOC (as it zeroes a JPEG
    frame's COM), the frame comparison proves the frame is the tile so zeroed, and the slide is
    shared without the text."""
    (tmp_path / "src").mkdir()
    edit = (lambda d: d + f"{TOKEN} {NAME}".encode()) if kind == "after-eoc" else _j2k_comment
    src = _j2k_svs(tmp_path / "src" / "CASE-7315.svs", edit)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", target, str(src), "-o", str(out), "--key-file", str(_key(tmp_path)))
    if target == "native":
        assert code != 0 and "failed: tiles-coded-tight" in stdout + stderr
        assert not list(out.rglob("*.svs"))
    else:
        assert code == 0, stdout + stderr
        assert list(out.rglob("*.dcm"))
        removed = json.loads((out / "wsianon-report.json").read_text())["slides"][0]["removed"]
        assert any(r["name"] == "JPEG COM/APPn in frames" for r in removed), removed
    assert TOKEN not in stdout + stderr
    assert not any(TOKEN.encode() in p.read_bytes() for p in out.rglob("*") if p.is_file())


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_a_clean_jpeg2000_svs_is_placed(cli, tmp_path, target):
    (tmp_path / "src").mkdir()
    src = _j2k_svs(tmp_path / "src" / "CASE-7316.svs")
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", target, str(src), "-o", str(out), "--key-file", str(_key(tmp_path)))
    assert code == 0, stdout + stderr
    s = json.loads((out / "wsianon-report.json").read_text())["slides"][0]
    check = "tiles-coded-tight" if target == "native" else "dicom: entropy tight"
    c = {c["check"]: c for c in s["verification"]["checks"]}[check]
    assert c["ok"] is True and not c["detail"].startswith("0 "), c  # the frames were judged
