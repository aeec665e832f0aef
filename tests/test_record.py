"""The record a privacy officer can sign: HTML report, certificate (JSON + PDF), review sheet.

The mixed batch (every native format, a DICOM input taking the DICOM route, one slide quarantined)
is rendered in a real headless Chromium (DevTools over a pipe): no console error, one card per
slide, thumbnails the browser decodes and PIL decodes; no canary value, file stem or source path in
the HTML, the certificate or the PDF text (pdftotext).  Then: the review sheet is private (0600,
outside OUT, refused inside it), and ``certify --check`` fails when an output byte changes.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from wsianon.pipeline import record

from .fixtures.bif_gen import make_bif
from .fixtures.chromium import Chromium, find_chromium
from .fixtures.dicom_gen import make_dicom
from .fixtures.mrxs_gen import make_mrxs, text_canaries
from .fixtures.ndpi_gen import make_ndpi_info
from .fixtures.philips_gen import make_philips
from .fixtures.scn_gen import make_scn
from .fixtures.svs_gen import write_svs


def _decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/"), uri[:40]
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    img.load()
    return img


def _leak_for_quarantine(monkeypatch):
    """The Aperio redactor forgets the description of one slide (stem containing QUAR): the
    verifier catches it and the slide is quarantined."""
    from wsianon.converters.aperio import AperioConverter

    real_plan = AperioConverter.plan

    def leaky_plan(self, inv, ctx):
        plan = real_plan(self, inv, ctx)
        if "QUAR" in Path(inv.path).name:
            plan.files[0].patches = [p for p in plan.files[0].patches if "ImageDescription" not in p.reason]
        return plan

    monkeypatch.setattr(AperioConverter, "plan", leaky_plan)


CARDS_JS = """(() => [...document.querySelectorAll('.card')].map(c => ({
  slide: c.dataset.slide, status: c.dataset.status, visible: !c.hidden,
  thumb: c.querySelector('img.thumb').src, decoded: c.querySelector('img.thumb').naturalWidth,
  images: [...c.querySelectorAll('img')].map(i => i.naturalWidth)})))()"""


LAZY_JS = """(() => ({built: document.querySelectorAll('#cards .card').length,
  visible: document.querySelectorAll('#cards .card:not([hidden])').length,
  stores: document.querySelectorAll('script#lazy-cards').length, rows: document.querySelectorAll('#slides tbody tr').length,
  decoded: [...document.querySelectorAll('#cards .card:not([hidden]) img.thumb')].filter(i => i.naturalWidth > 0).length}))()"""


def _synthetic(n: int) -> record.RecordData:
    thumb = record.data_uri(Image.new("RGB", (64, 48), (200, 120, 190)), record.THUMB_PX)
    slides = [
        record.SlideRecord(
            f"WSI-{i:016x}",
            "aperio",
            "native",
            "ok",
            [f"WSI-{i:016x}.svs"],
            [record.OutputFile(f"WSI-{i:016x}.svs", 1000 + i, f"{i:064x}")],
            thumbnail=thumb,
            checks=[{"check": "canary-scan", "ok": True, "detail": ""}],
        )
        for i in range(n)
    ]
    return record.RecordData({"version": "0", "policy": {"label": "remove", "macro": "remove", "dates": "remove"}}, slides, None, {}, "now")


def test_mixed_batch_report_in_chromium(tmp_path, monkeypatch, cli):
    if find_chromium() is None or shutil.which("pdftotext") is None:
        pytest.skip("chromium / pdftotext not installed (tools/ensure-system-deps.sh installs them when run as root)")
    src = tmp_path / "archive"
    src.mkdir()
    fixtures = [
        write_svs(src / "SVS-CASE-0001.svs"),
        make_ndpi_info(src / "NDPI-CASE-0002.ndpi"),
        make_bif(src / "BIF-CASE-0003.bif"),
        make_philips(src / "PHILIPS-CASE-0004.tiff"),
        make_scn(src / "SCN-CASE-0005.scn"),
        write_svs(src / "SVS-QUAR-CASE-0008.svs"),
    ]
    mrxs = make_mrxs(src, "MRXS-CASE-0006")
    dcm = make_dicom(src / "DICOM-CASE-0007")
    canaries: dict[str, str] = {}
    for fx in fixtures:
        c = fx.text_canaries() if hasattr(fx, "text_canaries") else fx.canaries
        canaries.update({f"{fx.path.name}:{k}": v for k, v in c.items()})
    canaries.update({f"mrxs:{k}": v for k, v in text_canaries(mrxs).items()})
    canaries.update({f"dicom:{k}": v for k, v in dcm.canaries.items()})
    canaries = {k: v for k, v in canaries.items() if len(v) >= 5}
    stems = [
        "SVS-CASE-0001",
        "NDPI-CASE-0002",
        "BIF-CASE-0003",
        "PHILIPS-CASE-0004",
        "SCN-CASE-0005",
        "MRXS-CASE-0006",
        "DICOM-CASE-0007",
        "SVS-QUAR-CASE-0008",
    ]

    _leak_for_quarantine(monkeypatch)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", src, "-o", out)
    assert code == 1, stdout + stderr  # one slide quarantined
    assert "review sheet (PRIVATE" in stdout
    report = json.loads((out / record.REPORT_NAME).read_text())
    slides = {s["slide"]: s for s in report["slides"]}
    assert len(slides) == 8
    assert sorted(s["status"] for s in slides.values()) == ["failed"] + ["ok"] * 7
    assert {s["target"] for s in slides.values()} == {"native", "dicom"}
    assert sorted(s["format"] for s in slides.values()) == sorted(["aperio", "aperio", "ndpi", "ventana", "philips", "leica", "mrxs", "dicom"])

    html_path, cert_path, pdf_path = out / record.REPORT_HTML, out / record.CERT_JSON, out / record.CERT_PDF
    shot = tmp_path / "report.png"
    with Chromium(height=1900) as browser:
        browser.load(html_path)
        cards = browser.evaluate(CARDS_JS)
        browser.screenshot(shot)
        # the inline script filters: only the quarantined slide is left
        browser.evaluate("(() => {const s=document.getElementById('fstatus'); s.value='quarantined'; s.dispatchEvent(new Event('change'));})()")
        shown = [c["slide"] for c in browser.evaluate(CARDS_JS) if c["visible"]]
        # a big report: cards kept as text and built page by page
        big = tmp_path / "big.html"
        big.write_text(record.render_html(_synthetic(record.LAZY_AFTER + 60)))
        browser.load(big)
        lazy_state = [browser.evaluate(LAZY_JS)]
        browser.evaluate("document.getElementById('next').click()")
        lazy_state.append(browser.evaluate(LAZY_JS))
        errors = browser.errors()
    assert errors == [], errors
    assert sorted(c["slide"] for c in cards) == sorted(slides)  # one card per slide
    assert all(c["visible"] for c in cards)
    for c in cards:
        assert c["decoded"] > 0 and all(w > 0 for w in c["images"]), c["slide"]  # the browser decoded every image
        img = _decode(c["thumb"])  # and so does PIL
        assert img.width > 8 and img.height > 8
        if slides[c["slide"]]["status"] == "ok":
            assert c["thumb"].startswith("data:image/jpeg"), c["slide"]  # rendered from the output
            lo, hi = img.convert("L").getextrema()
            assert hi - lo > 20  # a picture, not a placeholder
        else:
            assert c["status"] == "quarantined" and c["thumb"].startswith("data:image/png")
    assert shown == [s for s, v in slides.items() if v["status"] == "failed"]
    n = record.LAZY_AFTER + 60
    assert lazy_state[0] == {"built": 50, "visible": 50, "stores": 1, "rows": n, "decoded": 50}
    assert lazy_state[1] == {"built": 100, "visible": 50, "stores": 1, "rows": n, "decoded": 50}
    assert Image.open(shot).size == (1280, 1900)
    if os.environ.get("WSIANON_SCREENSHOT_TO"):  # the README's picture (docs/report.png) comes from here
        im = Image.open(shot).convert("RGB")
        im.resize((960, 1425), Image.LANCZOS).quantize(256).save(os.environ["WSIANON_SCREENSHOT_TO"], optimize=True)

    # nothing identifying in the HTML, the certificate or the PDF text
    pdf_text = subprocess.run(["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True, text=True, check=True).stdout
    cert = json.loads(cert_path.read_text())
    assert cert["certificate_id"] in pdf_text and "SHA-256" in pdf_text
    assert len(cert["outputs"]) >= 14 and all(o["sha256"] in pdf_text for o in cert["outputs"])
    for name, text in (("html", html_path.read_text()), ("certificate", cert_path.read_text()), ("pdf", pdf_text)):
        for k, v in canaries.items():
            assert v not in text, (name, k)
        for stem in stems:
            assert stem not in text, (name, stem)
        assert str(src) not in text and str(tmp_path) not in text, name
    # the certificate covers exactly the shared outputs, and the quarantined slide is named as not shared
    listed = {o["file"] for o in cert["outputs"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - set(record.RECORD_FILES)
    assert listed == on_disk
    assert [n["status"] for n in cert["not_shared"]] == ["quarantined"]
    assert cli("certify", "--check", out)[0] == 0

    # the private review sheet: beside OUT, 0600, the sources' labels and macros beside the outputs
    sheet = tmp_path / "out.review.html"
    assert oct(sheet.stat().st_mode & 0o777) == "0o600"
    text = sheet.read_text()
    assert str(src) in text and text.count('class="card"') == 8
    assert text.count("SOURCE label") >= 4 and text.count("SOURCE macro") >= 5
    quar_card = next(c for c in text.split("<article")[1:] if "SVS-QUAR-CASE-0008" in c)
    assert "QUARANTINED output (not shared)" in quar_card and "SOURCE label" in quar_card
    dicom_card = next(c for c in text.split("<article")[1:] if "DICOM-CASE-0007" in c)
    assert "SOURCE label" in dicom_card and "SOURCE overview" in dicom_card  # the DICOM series' LABEL/OVERVIEW instances


def test_review_sheet_refused_inside_out_and_private(tmp_path, cli):
    fx = write_svs(tmp_path / "CASE-REVIEW-1.svs")
    out = tmp_path / "out"
    code, _, stderr = cli("run", fx.path, "-o", out, "--review-sheet", out / "sheet.html")
    assert code == 2 and "never written inside OUT" in stderr
    assert not out.exists()  # refused before anything ran
    code, stdout, _ = cli("run", fx.path, "-o", out, "--review-sheet", tmp_path / "private" / "sheet.html")
    assert code == 0
    sheet = tmp_path / "private" / "sheet.html"
    assert oct(sheet.stat().st_mode & 0o777) == "0o600"
    assert "identifying" in stdout and str(sheet) in stdout
    assert "SOURCE label" in sheet.read_text() and "SOURCE macro" in sheet.read_text()
    assert not (tmp_path / "out.review.html").exists()
    # inside OUT, also through certify and the API (a sub-folder, or OUT itself)
    for bad in (out / "x" / "sheet.html", out):
        with pytest.raises(Exception, match="never written inside OUT"):
            record.write_review_sheet(out, bad)
    code, _, stderr = cli("certify", out, "--review-sheet", out / "s.html")
    assert code == 1 and "never written inside OUT" in stderr
    assert (out / record.REPORT_HTML).exists() and not (out / "s.html").exists()
    # --no-review-sheet writes none
    out2 = tmp_path / "out2"
    assert cli("run", fx.path, "-o", out2, "--no-review-sheet")[0] == 0
    assert not (tmp_path / "out2.review.html").exists()


def test_certify_check_fails_after_an_output_byte_changes(tmp_path, cli):
    fx = write_svs(tmp_path / "CASE-CERT-1.svs")
    out = tmp_path / "out"
    assert cli("run", fx.path, "-o", out, "--target", "dicom", "--no-review-sheet")[0] == 0
    code, stdout, stderr = cli("certify", "--check", out)
    assert code == 0 and "CONFIRMED" in stdout, stderr
    cert = json.loads((out / record.CERT_JSON).read_text())
    assert cert["outputs"] and all(o["file"].endswith(".dcm") and o["target"] == "dicom" for o in cert["outputs"])
    # one byte of one output changes (same size)
    victim = out / cert["outputs"][-1]["file"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    code, _, stderr = cli("certify", "--check", out)
    assert code == 1
    lines = [ln for ln in stderr.splitlines() if ln.startswith("mismatch:")]
    assert lines == [f"mismatch: {cert['outputs'][-1]['file']}: SHA-256 differs from the certificate"]
    # a file added to OUT and an edited certificate are mismatches too
    (out / "extra.txt").write_text("x")
    cert["outputs"][0]["sha256"] = "0" * 64
    (tmp_path / "escape.txt").write_text("y")
    cert["outputs"].append({"file": "../escape.txt", "size": 1, "sha256": "0" * 64})
    (out / record.CERT_JSON).write_text(json.dumps(cert))
    code, _, stderr = cli("certify", "--check", out)
    assert code == 1
    assert "extra.txt: not listed in the certificate" in stderr
    assert "certificate ID does not match its content" in stderr
    assert f"{cert['outputs'][0]['file']}: SHA-256 differs" in stderr
    assert "../escape.txt: outside the output folder" in stderr
    # re-issuing the record does not certify what changed after the verification (it was never
    # verified): certify refuses with one line naming it, and issues nothing (a certificate that
    # left it out said the slide was verified and shared while its output was not what was verified)
    (out / "extra.txt").unlink()
    changed = victim.relative_to(out).as_posix()
    code, _, stderr = cli("certify", out)
    assert code == 1 and f"{changed}: changed since the run verified it" in stderr and "no certificate issued" in stderr, stderr
    # the run's record, written as a run writes it, leaves the changed output out, which the check names
    record.write_record(out)
    code, _, stderr = cli("certify", "--check", out)
    lines = [ln for ln in stderr.splitlines() if ln.startswith("mismatch:")]
    assert code == 1 and lines == [f"mismatch: {changed}: not listed in the certificate"], stderr
    assert changed not in {o["file"] for o in json.loads((out / record.CERT_JSON).read_text())["outputs"]}


def test_key_fingerprint_never_the_key(tmp_path, cli):
    fx = write_svs(tmp_path / "CASE-KEY-1.svs")
    key_file = tmp_path / "k.key"
    out = tmp_path / "out"
    assert cli("key", "init", key_file)[0] == 0  # an explicit key file must exist (wsianon key init)
    assert cli("run", fx.path, "-o", out, "--key-file", key_file, "--dates", "year", "--no-review-sheet")[0] == 0
    key = bytes.fromhex(key_file.read_text().strip())
    cert = json.loads((out / record.CERT_JSON).read_text())
    assert cert["key_fingerprint"] == record.key_fingerprint(key)
    assert "reduced to the year" in " ".join(cert["policy"]["in_words"])
    # re-issued without the key, the recorded fingerprint stays; with another key, it changes
    assert cli("certify", out)[0] == 0
    assert json.loads((out / record.CERT_JSON).read_text())["key_fingerprint"] == record.key_fingerprint(key)
    other = tmp_path / "other.key"
    other.write_text("ab" * 32 + "\n")
    other.chmod(0o600)  # a key readable by others is refused
    # the job recorded its key's fingerprint: another key is refused and the certificate keeps the job's
    code, _, stderr = cli("certify", out, "--key-file", other)
    assert code == 1 and "not the job's key" in stderr
    assert json.loads((out / record.CERT_JSON).read_text())["key_fingerprint"] == record.key_fingerprint(key)
    assert cli("certify", out, "--key-file", key_file)[0] == 0
    assert cli("certify", out, "--key-file", tmp_path / "missing.key")[0] == 2 and not (tmp_path / "missing.key").exists()
    for f in out.rglob("*"):
        if f.is_file():
            raw = f.read_bytes()
            assert key.hex().encode() not in raw and key not in raw and key.hex()[:16].encode() not in raw, f.name


def test_record_follows_a_cumulative_report(tmp_path, cli):
    """Resumed jobs regenerate OUT/wsianon-report.json from the job manifest, cumulative over runs:
    the record is built from that report (its slides, run dates, key fingerprint) and the outputs."""
    (tmp_path / "in").mkdir()
    a, b = write_svs(tmp_path / "in" / "CASE-A-1.svs"), write_svs(tmp_path / "in" / "CASE-B-2.svs")
    out = tmp_path / "out"
    assert cli("run", a.path, "-o", out, "--no-review-sheet")[0] == 0
    first = json.loads((out / record.REPORT_NAME).read_text())
    assert cli("run", b.path, "-o", out, "--no-review-sheet")[0] == 0
    second = json.loads((out / record.REPORT_NAME).read_text())
    # the second run's report is the manifest's cumulative view: both slides, both runs, the job's key
    assert {s["slide"] for s in second["slides"]} > {s["slide"] for s in first["slides"]} and len(second["slides"]) == 2
    assert len(second["runs"]) == 2 and second["key_fingerprint"] == second["job"]["key_fingerprint"]
    assert cli("certify", "--check", out)[0] == 0  # the first run's output is accounted for
    cert = json.loads((out / record.CERT_JSON).read_text())
    assert {o["slide"] for o in cert["outputs"]} == {s["slide"] for s in second["slides"]}
    assert cert["key_fingerprint"] == second["key_fingerprint"] and len(cert["run_dates"]) >= 2
    page = (out / record.REPORT_HTML).read_text()
    assert page.count('class="card"') == 2 and second["key_fingerprint"] in page
    # a report that lost the first run's slide no longer accounts for its output: certify says OUT
    # is not ready to share (exit 1), and the check names the file
    (out / record.REPORT_NAME).write_text(json.dumps(dict(second, slides=second["slides"][1:])))
    code, _, stderr = cli("certify", out)
    assert code == 1 and "OUT is NOT ready to share: 1 file(s)" in stderr, stderr
    code, _, stderr = cli("certify", "--check", out)
    gone = second["slides"][0]["outputs"][0]
    assert code == 1 and f"{gone}: not listed in the certificate" in stderr


def test_thumbnail_cost_does_not_grow_with_a_slide_without_pyramid(monkeypatch):
    """A slide whose smallest level is huge is sampled, never decoded whole (OpenSlide's
    get_thumbnail would allocate the whole level)."""
    from PIL import Image

    reads: list[tuple[int, int]] = []

    class Huge:
        level_count = 1
        level_dimensions = [(200_000, 100_000)]  # 20 gigapixels, one level
        level_downsamples = [1.0]

        def get_thumbnail(self, size):
            raise AssertionError("the whole level must not be decoded")

        def read_region(self, loc, level, size):
            reads.append(size)
            return Image.new("RGBA", size, (200, 100, 150, 255))

    img = record.bounded_thumbnail(Huge(), 224)
    assert img.size == (224, 112)
    assert len(reads) <= record.MOSAIC_GRID**2 and max(w * h for w, h in reads) <= record.MOSAIC_PATCH**2
    assert img.getpixel((100, 50)) == (200, 100, 150)  # the sampled pixels are what it shows

    class Small(Huge):
        level_dimensions = [(2000, 1000)]

        def get_thumbnail(self, size):
            return Image.new("RGB", (224, 112), "white")

    reads.clear()
    assert record.bounded_thumbnail(Small(), 224).size == (224, 112)
    # a level this small is read whole, in strips of rows (never get_thumbnail's one region of the
    # whole level, never the mosaic's cells)
    assert len(reads) >= 2 and all(w == 2000 for w, _h in reads) and sum(h for _w, h in reads) == 1000
    assert max(w * h for w, h in reads) <= 2 * record_strip_pixels()


def test_a_dicom_thumbnail_never_decodes_a_huge_level_whole(tmp_path, monkeypatch):
    """Fuzz seed 147 (Philips #3 through --target dicom): a quarantined output whose one level
    declared 370,024 x 768 px took the record to 2.2 GB: wsidicom's ``read_thumbnail`` decodes the
    smallest level whole. A DICOM slide whose smallest level is above ``MAX_THUMB_SOURCE_PIXELS``
    is sampled through OpenSlide's reader (``bounded_thumbnail``) instead; here the bound is lowered
    below the fixture's smallest level, and wsidicom's whole-level read is made to fail."""
    from wsidicom import WsiDicom

    files = sorted(make_dicom(tmp_path / "slide").files)
    whole = record.render_slide_images(files)["thumbnail"]
    assert whole is not None  # under the bound: wsidicom's own thumbnail, as before

    def refuse(*_a, **_k):
        raise AssertionError("the whole level must not be decoded")

    monkeypatch.setattr(record, "MAX_THUMB_SOURCE_PIXELS", 1000)
    monkeypatch.setattr(WsiDicom, "read_thumbnail", refuse)
    res = record.render_slide_images(files)
    assert res["error"] is None and res["thumbnail"] is not None and res["thumbnail"].startswith("data:image/")
    img = Image.open(io.BytesIO(base64.b64decode(res["thumbnail"].split(",", 1)[1])))
    assert max(img.size) == record.THUMB_PX


def record_strip_pixels() -> int:
    from wsianon.verify.thumbnail import STRIP_PIXELS

    return STRIP_PIXELS


def test_thumbnail_mosaic_read_by_threads_is_the_serial_one(tmp_path, monkeypatch):
    """The mosaic's regions are read by two threads; the picture is the one a single thread draws."""
    import openslide

    from .fixtures.svs_gen import write_svs

    src = write_svs(tmp_path / "mosaic.svs", size=(2048, 1536), tile=256).path
    monkeypatch.setattr(record, "MAX_THUMB_SOURCE_PIXELS", 1000)  # force the mosaic
    with openslide.OpenSlide(str(src)) as s:
        one = record.bounded_thumbnail(s, 224, workers=1)
        two = record.bounded_thumbnail(s, 224, workers=2)
    assert one.size == two.size and one.tobytes() == two.tobytes()
    assert any(lo != hi for lo, hi in one.getextrema())  # the regions were drawn, not a blank canvas


def test_thumbnail_mosaic_reads_each_cell_from_one_tile():
    """Each cell's region lies inside one tile of the level (one JPEG decoded a cell, not up to
    four) and inside its cell; without the level's tile size it stays centred in the cell."""
    from PIL import Image

    reads: list[tuple[tuple[int, int], tuple[int, int]]] = []

    class Tiled:
        level_count = 1
        level_dimensions = [(16_896, 16_896)]  # the 100 MB benchmark slide: one 256-px-tiled level
        level_downsamples = [1.0]
        properties = {"openslide.level[0].tile-width": "256", "openslide.level[0].tile-height": "256"}

        def read_region(self, loc, level, size):
            reads.append((loc, size))
            return Image.new("RGBA", size, (10, 20, 30, 255))

    record.bounded_thumbnail(Tiled(), 224, workers=1)
    assert len(reads) == record.MOSAIC_GRID**2
    w = Tiled.level_dimensions[0][0]
    for (x, y), (cw, ch) in reads:
        assert x // 256 == (x + cw - 1) // 256 and y // 256 == (y + ch - 1) // 256, (x, y)
        gx, gy = x * record.MOSAIC_GRID // w, y * record.MOSAIC_GRID // w
        assert gx * w // record.MOSAIC_GRID <= x and x + cw <= (gx + 1) * w // record.MOSAIC_GRID
        assert gy * w // record.MOSAIC_GRID <= y and y + ch <= (gy + 1) * w // record.MOSAIC_GRID
    crossing = sum(1 for (x, _y), (cw, _h) in reads if x // 256 != (x + cw - 1) // 256)
    assert crossing == 0
    reads.clear()
    Tiled.properties = {}
    record.bounded_thumbnail(Tiled(), 224, workers=1)
    centred = [x for (x, _y), _s in reads[: record.MOSAIC_GRID]]
    assert centred == [(g * w // record.MOSAIC_GRID + (g + 1) * w // record.MOSAIC_GRID - 64) // 2 for g in range(record.MOSAIC_GRID)]
    assert any(x // 256 != (x + 63) // 256 for x in centred)  # centred, some cells cross a tile edge


def test_in_one_tile_keeps_the_run_in_its_cell():
    assert record._in_one_tile(0, 1056, 64, 256) == 512  # centred at 496 it would cross 512: moved into [512, 768)
    assert record._in_one_tile(0, 100, 64, 256) == 18  # already inside one tile: centred
    assert record._in_one_tile(1000, 1070, 64, 256) == 1003  # the tile's part of the cell is too short: centred
    assert record._in_one_tile(0, 1056, 64, 0) == 496  # tile size unknown: centred


def test_record_renders_missing_images_in_threads_each_on_its_own_slide(tmp_path, monkeypatch, cli):
    """A serial job renders its slides' images when the record is written: two threads do it
    (``RENDER_THREADS``), in batches, and each card still shows its own slide's pictures."""
    import threading

    (tmp_path / "in").mkdir()
    for i, size in enumerate([(1024, 768), (2048, 1024), (768, 1024)]):
        write_svs(tmp_path / "in" / f"CASE-R-{i}.svs", size=size, tile=256)
    out = tmp_path / "out"
    assert cli("run", tmp_path / "in", "-o", out, "--no-review-sheet")[0] == 0
    (tmp_path / "out.wsianon-record.sqlite").unlink()  # nothing cached: every slide is rendered again
    threads: set[str] = set()
    original = record.render_slide_images

    def spy(path, thumbnail=True):
        threads.add(threading.current_thread().name)
        return original(path, thumbnail)

    monkeypatch.setattr(record, "render_slide_images", spy)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(record, "RENDER_BATCH", 2)  # three slides: two batches
    progress: list[tuple[int, int]] = []
    data = record.collect(out, on_render=lambda done, total: progress.append((done, total)))
    shared = [r for r in data.slides if r.status == "ok"]
    assert len(shared) == 3 and len(threads) == 2 and all(t.startswith("wsianon-render") for t in threads)
    assert progress == [(0, 3), (1, 3), (2, 3), (3, 3)]
    alone = [original(out / r.outputs[0]) for r in shared]  # each slide rendered by itself
    assert len({a["thumbnail"] for a in alone}) == 3  # three different pictures, so a swap would show
    for rec, own in zip(shared, alone):
        assert (rec.thumbnail, rec.images, rec.image_error) == (own["thumbnail"], own["images"], None)
    # and they went into the cache: the next record renders nothing
    threads.clear()
    progress.clear()
    record.collect(out, on_render=lambda done, total: progress.append((done, total)))
    assert threads == set() and progress == []


def test_record_rendering_stops_at_an_error_without_rendering_the_rest(monkeypatch):
    """Ctrl-C (or any error) while the record renders: the renders not yet started are dropped,
    not waited for (a batch holds up to ``RENDER_BATCH`` slides)."""
    import threading
    import time

    started: list[str] = []
    lock = threading.Lock()

    def render(path, thumbnail=True):
        with lock:
            started.append(str(path))
        if str(path) == "s0":
            raise KeyboardInterrupt
        time.sleep(0.2)
        return {"thumbnail": None, "images": [], "error": None}

    monkeypatch.setattr(record, "render_slide_images", render)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    todo = [record._Render(None, "sig", Path(f"s{i}")) for i in range(20)]  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        list(record._render_all(todo))
    assert 1 <= len(started) <= 4, started  # the first, and what the other thread had begun


def test_a_serial_job_says_it_renders_the_records_thumbnails(tmp_path, cli):
    """The record's images are rendered at the end of a serial job (minutes on a large one): the
    console says so, with the count; worker processes render their own, and then nothing is said."""
    (tmp_path / "in").mkdir()
    for i in range(2):
        write_svs(tmp_path / "in" / f"CASE-P-{i}.svs", size=(1024 + 256 * i, 768))
    code, _o, e = cli("run", tmp_path / "in", "-o", tmp_path / "out1", "--no-review-sheet", "--log", tmp_path / "job.log")
    assert code == 0 and "record: rendering the thumbnails of 2 slide(s)" in e, e
    events = [json.loads(line) for line in (tmp_path / "job.log").read_text().splitlines()]
    assert {"event": "record", "slides": 2} in [{k: v for k, v in ev.items() if k != "t"} for ev in events]
    code, _o, e = cli("run", tmp_path / "in", "-o", tmp_path / "out2", "--no-review-sheet", "--workers", "2")
    assert code == 0 and "record: rendering" not in e, e
    # certify re-issues the record: with the cache, nothing to render; without it, it says so
    code, _o, e = cli("certify", tmp_path / "out1")
    assert code == 0 and "record: rendering" not in e, e
    (tmp_path / "out1.wsianon-record.sqlite").unlink()
    code, _o, e = cli("certify", tmp_path / "out1")
    assert code == 0 and "record: rendering the thumbnails of 2 slide(s)" in e, e
