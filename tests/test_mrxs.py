"""3DHistech MRXS: fixture faithfulness, the native redactor (plan level), and the CLI end to end."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import openslide
import pytest
from PIL import Image

from tests.conftest import shared
from tests.fixtures.helpers import scan_files, tree_digest
from tests.fixtures.mrxs_gen import make_mrxs, text_canaries
from wsianon.converters.base import SlideContext
from wsianon.converters.mrxs import MrxsConverter, jpeg_text_segments
from wsianon.errors import CorruptInput
from wsianon.io.plan import apply_copy
from wsianon.profiles.policy import Policy

KEY = b"m" * 32


def ctx(pseudonym: str = "PSEUDO02", key: bytes = KEY, **policy) -> SlideContext:
    return SlideContext(pseudonym, key, Policy(**policy))


def apply_plan(plan, out: Path) -> list[Path]:
    files = []
    for fp in plan.files:
        dest = out / fp.dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        apply_copy(fp, dest)
        files.append(dest)
    return files


def redact(src: Path, out: Path, **kw):
    conv = MrxsConverter()
    inv = conv.inspect(src)
    plan = conv.plan(inv, ctx(**kw))
    return inv, plan, apply_plan(plan, out)


def all_canaries(info) -> dict[str, str]:
    c = text_canaries(info)
    c["file name"] = info.mrxs.stem
    return c


@pytest.fixture
def mrxs(tmp_path):
    return make_mrxs(tmp_path / "in", bom=True, crlf=True)


# -- fixture faithfulness ------------------------------------------------------------------


@pytest.mark.parametrize("bom,crlf", [(False, False), (True, True)])
def test_fixture_opens_as_mirax(tmp_path, bom, crlf):
    info = make_mrxs(tmp_path, bom=bom, crlf=crlf)
    p = str(info.mrxs)
    assert openslide.OpenSlide.detect_format(p) == "mirax"
    with openslide.OpenSlide(p) as s:
        assert sorted(s.associated_images) == ["label", "macro", "thumbnail"]
        assert s.level_dimensions == tuple(info.level_dims)
        assert s.properties["mirax.GENERAL.SLIDE_NAME"] == info.canaries["SLIDE_NAME"]
        assert s.properties["mirax.NONHIERLAYER_0_SECTION.SCANNER_HARDWARE_ID"] == info.canaries["SCANNER_HARDWARE_ID"]
        for lv in range(s.level_count):
            region = s.read_region((0, 0), lv, s.level_dimensions[lv]).convert("RGB")
            lo, hi = region.getextrema()[1]
            assert hi - lo > 20
    raw = info.mrxs.read_bytes()
    texts = [t for _, t in jpeg_text_segments(raw)]
    assert info.canaries["preview:JPEG comment"] in texts
    assert any(info.canaries["preview:EXIF"] in t for t in texts)
    import zxingcpp

    found = [b.text for b in zxingcpp.read_barcodes(Image.open(io.BytesIO(raw)).convert("RGB"))]
    assert info.canaries["label:barcode"] in found
    ini = (info.folder / "Slidedat.ini").read_bytes()
    assert ini.startswith(b"\xef\xbb\xbf") == bom
    assert (b"\r\n" in ini) == crlf
    for name in ("Index.dat", "Data0000.dat", "Data0001.dat", "Data0002.dat"):
        assert info.canaries["SLIDE_ID"].encode() in (info.folder / name).read_bytes()[:64]
    assert info.canaries["ProfileName"].encode() in (info.folder / "Data0002.dat").read_bytes()


# -- redaction (plan level) ------------------------------------------------------------------


def _ini_keys(raw: bytes) -> list[str]:
    text = raw.decode("utf-8-sig")
    return [l.split("=")[0].strip() for l in text.splitlines() if "=" in l]


def test_redact_complete_slide(mrxs, tmp_path):
    before = tree_digest(mrxs.mrxs.parent)
    inv, plan, files = redact(mrxs.mrxs, tmp_path / "out")
    out = tmp_path / "out"
    main = out / "PSEUDO02.mrxs"
    assert files[0] == main and (out / "PSEUDO02").is_dir()
    assert MrxsConverter().commit_last(plan) == ["PSEUDO02.mrxs"]
    assert tree_digest(mrxs.mrxs.parent) == before, "input modified"

    assert openslide.OpenSlide.detect_format(str(main)) == "mirax"
    with openslide.OpenSlide(str(main)) as s, openslide.OpenSlide(str(mrxs.mrxs)) as s0:
        assert s.level_dimensions == s0.level_dimensions
        assert sorted(s.associated_images) == ["thumbnail"]
        assert s.properties["mirax.GENERAL.SLIDE_NAME"] == "PSEUDO02"
        assert s.properties["mirax.GENERAL.PROJECT_NAME"] == ""
        for lv in range(s.level_count):
            assert s.read_region((0, 0), lv, s.level_dimensions[lv]).size == s.level_dimensions[lv]

    # no canary in any byte of any output file (file name / folder name included)
    assert scan_files(files, all_canaries(mrxs)) == []
    assert {p.name for p in files} == {"PSEUDO02.mrxs", "Slidedat.ini", "Index.dat", "Data0000.dat", "Data0001.dat", "Data0002.dat"}

    # pyramid tile bytes identical, at the same offsets of the same Data files
    for fname, off, ln in mrxs.tiles:
        a = (mrxs.folder / fname).read_bytes()[off : off + ln]
        b = (out / "PSEUDO02" / fname).read_bytes()[off : off + ln]
        assert a == b
    # label / macro / whole-slide blobs destroyed
    for name in ("ScanDataLayer_SlideBarcode", "ScanDataLayer_SlideThumbnail", "ScanDataLayer_WholeSlide"):
        fname, off, ln = mrxs.blobs[name]
        assert (out / "PSEUDO02" / fname).read_bytes()[off : off + ln] == bytes(ln)

    # ini: BOM, CRLF, key order kept (minus the removed records, renumbered)
    src_ini = (mrxs.folder / "Slidedat.ini").read_bytes()
    out_ini = (out / "PSEUDO02" / "Slidedat.ini").read_bytes()
    assert out_ini.startswith(b"\xef\xbb\xbf") and b"\r\n" in out_ini and b"\n" not in out_ini.replace(b"\r\n", b"")
    src_keys, out_keys = _ini_keys(src_ini), _ini_keys(out_ini)
    assert out_keys[: src_keys.index("NONHIER_0_NAME")] == src_keys[: src_keys.index("NONHIER_0_NAME")]
    assert b"ScanDataLayer_SlideBarcode" not in out_ini and b"BARCODE_IMAGE_TYPE" not in out_ini
    assert b"NONHIER_0_COUNT = 2" in out_ini and b"NONHIER_0_VAL_0 = ScanDataLayer_SlidePreview" in out_ini

    # SLIDE_ID: one new keyed value everywhere
    new_id = next(l.split("=")[1].strip() for l in out_ini.decode("utf-8-sig").splitlines() if l.startswith("SLIDE_ID"))
    assert len(new_id) == len(mrxs.canaries["SLIDE_ID"]) and new_id != mrxs.canaries["SLIDE_ID"]
    for name in ("Index.dat", "Data0000.dat", "Data0001.dat", "Data0002.dat"):
        assert (out / "PSEUDO02" / name).read_bytes()[5 : 5 + len(new_id)] == new_id.encode()
    inv2 = MrxsConverter().inspect(mrxs.mrxs)
    again = MrxsConverter().plan(inv2, ctx())
    assert again.files[1].content == plan.files[1].content  # same key -> same SLIDE_ID

    # preview replaced by a neutral JPEG without metadata
    prev = main.read_bytes()
    assert jpeg_text_segments(prev) == []
    with Image.open(io.BytesIO(prev)) as im:
        assert im.size == Image.open(mrxs.mrxs).size
        lo, hi = im.convert("L").getextrema()
        assert hi - lo <= 2

    # report names fields, never values
    text = json.dumps(plan.describe()) + json.dumps(inv.public())
    for v in text_canaries(mrxs).values():
        assert v not in text
    names = {r.name for r in plan.removals}
    assert {"Slidedat.ini:PROJECT_NAME", "Slidedat.ini:SCANNER_HARDWARE_ID", "Slidedat.ini:OPERATOR_NOTE", "ProfileXML"} <= names


def test_macro_keep_and_label_blank(mrxs, tmp_path):
    _, _, files = redact(mrxs.mrxs, tmp_path / "o", macro="keep", label="blank")
    with openslide.OpenSlide(str(files[0])) as s:
        assert sorted(s.associated_images) == ["label", "macro", "thumbnail"]
        lo, hi = s.associated_images["label"].convert("L").getextrema()
        assert lo == hi == 255
    import zxingcpp

    with openslide.OpenSlide(str(files[0])) as s:
        assert zxingcpp.read_barcodes(s.associated_images["label"].convert("RGB")) == []


@pytest.mark.parametrize("width", ["0", "60000"])
def test_label_blank_of_a_damaged_size_removes_the_label(tmp_path, width):
    """Slidedat.ini's BARCODE_IMAGE_WIDTH/HEIGHT size the blank label: 0 was an internal error
    (PIL cannot write an empty image), 30000 x 30000 took 3.6 GB to draw (a larger size, more; the
    process of a batch killed for memory).  Such a label is removed, as one whose blank does not
    fit; the run is held to 3 GiB of address space here (60000 x 60000 needs 10 GB)."""
    import resource
    import subprocess
    import sys

    from tests.conftest import run_subprocess

    info = make_mrxs(tmp_path / "in")
    ini = info.mrxs.with_suffix("") / "Slidedat.ini"
    text = ini.read_text(encoding="utf-8-sig")
    assert "BARCODE_IMAGE_WIDTH = 400" in text and "BARCODE_IMAGE_HEIGHT = 300" in text
    ini.write_text(
        text.replace("BARCODE_IMAGE_WIDTH = 400", f"BARCODE_IMAGE_WIDTH = {width}").replace("BARCODE_IMAGE_HEIGHT = 300", f"BARCODE_IMAGE_HEIGHT = {width}")
    )
    key = tmp_path / "key"
    assert run_subprocess("key", "init", key).returncode == 0

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "wsianon.cli", "run", "--label", "blank", str(info.mrxs), "-o", str(out), "--key-file", str(key)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert res.returncode == 0, res.stdout + res.stderr
    slide = json.loads((out / "wsianon-report.json").read_text())["slides"][0]
    assert slide["status"] == "ok"
    assert [r for r in slide["removed"] if r["name"] == "label" and "removed" in r["action"]], slide["removed"]
    (mrxs_out,) = out.glob("*.mrxs")
    with openslide.OpenSlide(str(mrxs_out)) as s:
        assert "label" not in s.associated_images


def test_blank_sizes():
    from wsianon.io.jpeg_images import MAX_BLANK_PIXELS, blank_jpeg, blank_size_ok
    from wsianon.converters.dpufs import blank_jpeg_b64

    assert blank_size_ok((1, 1)) and blank_size_ok((8192, 8192)) and not blank_size_ok((0, 300)) and not blank_size_ok((8193, 8192))
    assert MAX_BLANK_PIXELS == 8192 * 8192
    with pytest.raises(ValueError):
        blank_jpeg((30000, 30000))
    # a Philips label JPEG whose header claims 12000 x 12000 (PIL opens it with a warning only)
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (12000).to_bytes(2, "big") * 2
    import base64

    blank = base64.b64decode(blank_jpeg_b64(base64.b64encode(bytes(data)).decode()))
    assert Image.open(io.BytesIO(blank)).size == (1, 1)


def test_a_preview_of_a_damaged_size_gets_the_default_stand_in(tmp_path):
    """The ``.mrxs`` preview is replaced by a grey JPEG of its size: a header claiming 12000 x
    12000 (PIL opens it with a warning only) would have drawn 144 Mpx."""
    from wsianon.converters.mrxs.redactor import _DEFAULT_PREVIEW_SIZE, _preview_size

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    p = tmp_path / "x.mrxs"
    p.write_bytes(bytes(data))
    assert _preview_size(p) == (16, 16)
    data[sof + 5 : sof + 9] = (12000).to_bytes(2, "big") * 2
    p.write_bytes(bytes(data))
    assert _preview_size(p) == _DEFAULT_PREVIEW_SIZE != (12000, 12000)


def test_thumbnail_with_barcode_is_removed(tmp_path):
    info = make_mrxs(tmp_path / "in", barcode_in_thumbnail=True)
    inv, plan, files = redact(info.mrxs, tmp_path / "o")
    assert ("thumbnail", "remove") in {(i.kind, i.action) for i in inv.images}
    with openslide.OpenSlide(str(files[0])) as s:
        assert list(s.associated_images) == []
        s.read_region((0, 0), 0, (32, 32))


def test_rename_keep(mrxs, tmp_path):
    _, plan, files = redact(mrxs.mrxs, tmp_path / "o", rename="keep")
    assert files[0].name == mrxs.mrxs.name
    assert (tmp_path / "o" / mrxs.folder.name / "Slidedat.ini").is_file()


# -- refusals and corrupt input ---------------------------------------------------------------


def _set_datafile(info, index: int, name: str) -> None:
    ini = info.folder / "Slidedat.ini"
    raw = ini.read_bytes()
    old = f"FILE_{index} = Data000{index}.dat".encode()
    assert old in raw
    ini.write_bytes(raw.replace(old, f"FILE_{index} = {name}".encode()))


@pytest.mark.parametrize("name", ["../outside.dat", "/etc/passwd", "sub/Data0001.dat", ".."])
def test_datafile_outside_folder_refused(tmp_path, name):
    info = make_mrxs(tmp_path / "in")
    (tmp_path / "in" / "outside.dat").write_bytes((info.folder / "Data0001.dat").read_bytes())
    _set_datafile(info, 1, name)
    with pytest.raises(CorruptInput) as ei:
        MrxsConverter().inspect(info.mrxs)
    assert "refused" in ei.value.reason


def test_symlinked_datafile_refused(tmp_path):
    info = make_mrxs(tmp_path / "in")
    target = tmp_path / "elsewhere.dat"
    shutil.move(info.folder / "Data0001.dat", target)
    os.symlink(target, info.folder / "Data0001.dat")
    with pytest.raises(CorruptInput) as ei:
        MrxsConverter().inspect(info.mrxs)
    assert "symbolic link" in ei.value.reason


def test_cut_index_is_corrupt(tmp_path):
    info = make_mrxs(tmp_path / "in")
    idx = info.folder / "Index.dat"
    idx.write_bytes(idx.read_bytes()[:200])
    with pytest.raises(CorruptInput) as ei:
        MrxsConverter().inspect(info.mrxs)
    assert "Index.dat" in ei.value.reason


def test_missing_datafile_is_corrupt(tmp_path):
    info = make_mrxs(tmp_path / "in")
    (info.folder / "Data0000.dat").unlink()
    with pytest.raises(CorruptInput) as ei:
        MrxsConverter().inspect(info.mrxs)
    assert "missing" in ei.value.reason


def test_truncated_datafile_is_corrupt(tmp_path):
    info = make_mrxs(tmp_path / "in")
    d = info.folder / "Data0000.dat"
    d.write_bytes(d.read_bytes()[:5000])
    with pytest.raises(CorruptInput, match="beyond the end"):
        MrxsConverter().inspect(info.mrxs)


def test_sniff(mrxs, tmp_path):
    conv = MrxsConverter()
    assert conv.sniff(mrxs.mrxs, mrxs.mrxs.read_bytes()[:64])
    lone = tmp_path / "lone.mrxs"
    lone.write_bytes(mrxs.mrxs.read_bytes())
    assert not conv.sniff(lone, lone.read_bytes()[:64])


# -- the real partial MIRAX -------------------------------------------------------------------------


def test_real_partial_mirax_cleaned(tmp_path):
    src_dir = shared("mirax-partial")
    work = tmp_path / "in"
    shutil.copytree(src_dir, work)
    src = work / "Mirax2-Fluorescence-1.mrxs"
    before = tree_digest(work)
    inv, plan, files = redact(src, tmp_path / "out")
    assert tree_digest(work) == before
    out = tmp_path / "out"
    ini = (out / "PSEUDO02" / "Slidedat.ini").read_text()
    for needle in ("25058_Epiderm_AcH3_3", "7C691E3F2DC6412781AECA3E3B3213C1", "20/02/2008"):
        assert needle not in ini
    assert "ProjectName" not in ini  # PROJECT_NAME blanked even when it looks like a placeholder
    assert "ScanDataLayer_SlideBarcode" not in ini and "ScanDataLayer_SlideThumbnail" not in ini
    assert "NONHIER_0_COUNT = 8" in ini and "ScanDataLayer_SlidePreview" in ini
    for name in ("Index.dat", "Data0000.dat", "Data0001.dat", "Data0002.dat"):
        data = (out / "PSEUDO02" / name).read_bytes()
        assert b"7C691E3F2DC6412781AECA3E3B3213C1" not in data
        assert len(data) == 404
    assert jpeg_text_segments((out / "PSEUDO02.mrxs").read_bytes()) == []
    canaries = {c.name + str(i): c.value for i, c in enumerate(inv.canaries())}
    assert canaries and scan_files(files, canaries) == []
    assert any("Index.dat layout" in n for n in plan.notes)


# -- end to end through the CLI -----------------------------------------------------------------------


def test_cli_end_to_end(tmp_path, cli):
    from tests.fixtures.native_helpers import cli_run_ok

    a = make_mrxs(tmp_path / "in", "CASE-MRXS-0001", bom=True, crlf=True)
    b = make_mrxs(tmp_path / "in", "CASE-MRXS-0002")
    before = tree_digest(tmp_path / "in")
    out = tmp_path / "out"
    report = cli_run_ok(cli, [a.mrxs, b.mrxs], out)
    assert [s["format"] for s in report["slides"]] == ["mrxs", "mrxs"]
    assert tree_digest(tmp_path / "in") == before
    mains = sorted(out.glob("*.mrxs"))
    assert len(mains) == 2
    from wsianon.pipeline.record import RECORD_FILES

    files = [p for p in out.rglob("*") if p.is_file() and p.name not in RECORD_FILES]
    assert len(files) == 12
    canaries = all_canaries(a) | {"file name 2": b.mrxs.stem}
    assert scan_files(files, canaries) == []
    assert scan_files([out / "wsianon-report.json"], canaries) == []
    for m in mains:
        assert openslide.OpenSlide.detect_format(str(m)) == "mirax"
        with openslide.OpenSlide(str(m)) as s:
            assert list(s.associated_images) == ["thumbnail"]
            assert s.level_dimensions == tuple(a.level_dims)
        for fname, off, ln in a.tiles:
            assert (m.with_suffix("") / fname).read_bytes()[off : off + ln] == (a.folder / fname).read_bytes()[off : off + ln]
    checks = {c["check"] for s in report["slides"] for c in s["verification"]["checks"]}
    assert {"mrxs-tiles-identical", "mrxs-slide-id", "mrxs-preview", "mrxs-associated-records"} <= checks


def test_cli_folder_input(tmp_path, cli):
    from tests.fixtures.native_helpers import cli_run_ok

    make_mrxs(tmp_path / "in", "CASE-MRXS-0003")
    report = cli_run_ok(cli, [tmp_path / "in"], tmp_path / "out")
    assert [s["format"] for s in report["slides"]] == ["mrxs"]


def test_cli_corrupt_mrxs(tmp_path):
    from tests.fixtures.native_helpers import cli_run_corrupt

    cut = make_mrxs(tmp_path / "a", "CUT-1")
    idx = cut.folder / "Index.dat"
    idx.write_bytes(idx.read_bytes()[:200])
    miss = make_mrxs(tmp_path / "b", "MISS-1")
    (miss.folder / "Data0001.dat").unlink()
    cli_run_corrupt([cut.mrxs], tmp_path / "o1", "index.dat")
    cli_run_corrupt([miss.mrxs], tmp_path / "o2", "missing")


def test_cli_dicom_target(tmp_path, cli):
    """MRXS through the DICOM route (OpenSlide reader): verified, no canary in any instance."""
    from tests.fixtures.native_helpers import cli_run_dicom_ok

    info = make_mrxs(tmp_path / "in", "CASE-MRXS-D1")
    before = tree_digest(tmp_path / "in")
    files = cli_run_dicom_ok(cli, [info.mrxs], tmp_path / "out", all_canaries(info))
    assert files
    assert tree_digest(tmp_path / "in") == before
    import pydicom

    types = set()
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        types.add(ds.ImageType[2])
    assert "LABEL" not in types and "OVERVIEW" not in types
