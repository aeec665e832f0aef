"""A paged record: above the page size (``WSIANON_RECORD_PAGE_SLIDES``, a test / tuning knob; 3
here) ``wsianon-report.html`` is an index (summary and a compact table of every slide) and the
cards are on numbered, self-contained card pages in ``wsianon-report-cards/`` beside it.

One job of 7 small slides (page size 3: 3 card pages) serves the module; each test works on a
copy of its OUT.  Chromium opens the index and the card pages from file:// (no console error;
every row's link resolves to an existing page holding that slide's card; the last page shows its
cards); the certificate lists every card page and ``certify --check`` names an edited, a deleted
and an extra page; ``verify OUT`` does not call the pages stray (an edited one it does); a record
of fewer slides leaves no stale page; an interrupted record leaves no certificate; the pages are
written holding one page's images at a time; the review sheet still shows every output's
thumbnail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from wsianon.pipeline import record

from .fixtures.chromium import Chromium, find_chromium
from .fixtures.svs_gen import write_svs

N, PAGE = 7, 3


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from wsianon.cli import app

    tmp = tmp_path_factory.mktemp("pages")
    (tmp / "in").mkdir()
    for i in range(N):
        write_svs(tmp / "in" / f"CASE-PAGE-{i}.svs", size=(512, 384), levels=1)
    key = tmp / "key"
    key.write_text("ab" * 32)
    key.chmod(0o600)
    mp = pytest.MonkeyPatch()
    mp.setenv(record.PAGE_SLIDES_ENV, str(PAGE))
    try:
        res = CliRunner().invoke(app, ["run", str(tmp / "in"), "-o", str(tmp / "out"), "--key-file", str(key)], catch_exceptions=False)
    finally:
        mp.undo()
    assert res.exit_code == 0, res.stdout
    return tmp


@pytest.fixture
def out(job, tmp_path, monkeypatch) -> Path:
    """A copy of the job's OUT, its record cache and review sheet beside it; page size 3."""
    monkeypatch.setenv(record.PAGE_SLIDES_ENV, str(PAGE))
    for p in job.iterdir():
        if p.name.startswith("out"):
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, tmp_path / p.name)
    return tmp_path / "out"


def _pages(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in (out / record.CARDS_DIR).glob("*")) if (out / record.CARDS_DIR).exists() else []


def _mismatches(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("mismatch:")]


ROWS_JS = """(() => [...document.querySelectorAll('#slides tbody tr')].map(r => ({slide: r.dataset.slide, href: r.querySelector('a').href})))()"""
SHOWN_JS = """(() => [...document.querySelectorAll('#cards .card:not([hidden])')].map(c => ({slide: c.dataset.slide,
  decoded: c.querySelector('img.thumb').naturalWidth, inview: c.getBoundingClientRect().top < innerHeight && c.getBoundingClientRect().bottom > 0})))()"""


def test_index_and_card_pages_open_from_file_urls_and_link_to_each_other(out):
    if find_chromium() is None:
        pytest.skip("chromium not installed (tools/ensure-system-deps.sh installs it when run as root)")
    report = json.loads((out / record.REPORT_NAME).read_text())
    slides = [s["slide"] for s in report["slides"]]
    assert len(slides) == N
    assert _pages(out) == [f"{record.CARDS_DIR}/{i:04d}.html" for i in (1, 2, 3)]
    index = (out / record.REPORT_HTML).read_text()
    assert 'class="card"' not in index and "lazy-cards" not in index and "data:image" not in index  # the cards are on the pages
    csp = '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';'
    for rel in _pages(out):
        page = (out / rel).read_text()
        assert csp in page and 'href="../wsianon-report.html"' in page
    with Chromium() as browser:
        browser.load(out / record.REPORT_HTML)
        rows = browser.evaluate(ROWS_JS)
        assert sorted(r["slide"] for r in rows) == sorted(slides)  # every slide in the index's table
        targets = {}
        for r in rows:
            url = urlparse(r["href"])
            assert url.scheme == "file" and unquote(url.fragment) == f"card-{r['slide']}", r
            path = Path(unquote(url.path))
            assert path.is_file() and path.parent == out / record.CARDS_DIR, r
            assert f'id="card-{r["slide"]}"' in path.read_text()  # the page holds the slide's card
            targets[r["slide"]] = r["href"]
        assert browser.evaluate("[...document.querySelectorAll('#card-pages a')].length") == 3
        # a row's link opens the last page at that slide's card
        last = slides[-1]
        browser.call("Page.navigate", session=True, url=targets[last])
        browser.wait_event("Page.loadEventFired")
        shown = browser.evaluate(SHOWN_JS)
        assert [c["slide"] for c in shown] == [last] and shown[0]["decoded"] > 0 and shown[0]["inview"], shown
        # the last page opened as a file shows its cards, pictures decoded
        browser.load(out / record.card_page_name(3))
        shown = browser.evaluate(SHOWN_JS)
        assert [c["slide"] for c in shown] == slides[6:] and all(c["decoded"] > 0 for c in shown), shown
        browser.load(out / record.card_page_name(1))
        shown = browser.evaluate(SHOWN_JS)
        assert sorted(c["slide"] for c in shown) == sorted(slides[:3]) and all(c["decoded"] > 0 for c in shown), shown
        back = browser.evaluate("document.querySelector('#nav a').href")
        assert Path(unquote(urlparse(back).path)) == out / record.REPORT_HTML
        # a page of more cards than its table shows at once (50): a link's card is brought into view
        big = _synthetic(60)
        page = out.parent / "big.html"
        page.write_text(record.render_card_page(big, big.slides, 1, 1))
        browser.call("Page.navigate", session=True, url=page.as_uri() + "#card-" + big.slides[55].slide)
        browser.wait_event("Page.loadEventFired")
        shown = browser.evaluate(SHOWN_JS)
        assert sorted(c["slide"] for c in shown) == [s.slide for s in big.slides[50:]], shown  # the table's second page
        assert big.slides[55].slide in [c["slide"] for c in shown if c["inview"]], shown
        assert browser.errors() == []


def _synthetic(n: int) -> record.RecordData:
    from PIL import Image

    thumb = record.data_uri(Image.new("RGB", (64, 48), (200, 120, 190)), record.THUMB_PX)
    slides = [
        record.SlideRecord(
            f"WSI-{i:016x}", "aperio", "native", "ok", [f"WSI-{i:016x}.svs"], [record.OutputFile(f"WSI-{i:016x}.svs", 1000 + i, f"{i:064x}")], thumbnail=thumb
        )
        for i in range(n)
    ]
    return record.RecordData({"version": "0", "policy": {}}, slides, None, {}, "now")


def test_certificate_lists_the_pages_and_check_names_an_edited_missing_or_extra_page(out, cli):
    cert = json.loads((out / record.CERT_JSON).read_text())
    listed = {r["file"]: r for r in cert["reports"]}
    assert set(_pages(out)) <= set(listed) and len(_pages(out)) == 3
    for rel in _pages(out):
        assert listed[rel]["size"] == (out / rel).stat().st_size and listed[rel]["sha256"] == record.sha256_file(out / rel)
    assert all(r["file"] not in {o["file"] for o in cert["outputs"]} for r in cert["reports"])  # record files, not outputs
    code, stdout, stderr = cli("certify", "--check", out)
    assert code == 0 and "CONFIRMED" in stdout and "the reports and 3 card page(s) match" in " ".join(stdout.split()), stderr
    page = out / record.card_page_name(2)
    good = page.read_bytes()
    page.write_bytes(good.replace(b"cards page 2 of 3", b"cards page 2 of 9"))  # same size, other bytes
    code, _, stderr = cli("certify", "--check", out)
    assert code == 1 and _mismatches(stderr) == [f"mismatch: {record.card_page_name(2)}: SHA-256 differs from the certificate"], stderr
    page.unlink()
    code, _, stderr = cli("certify", "--check", out)
    assert code == 1 and _mismatches(stderr) == [f"mismatch: {record.card_page_name(2)}: missing"], stderr
    page.write_bytes(good)
    (out / record.card_page_name(4)).write_bytes(good)
    code, _, stderr = cli("certify", "--check", out)
    assert code == 1 and _mismatches(stderr) == [f"mismatch: {record.card_page_name(4)}: not listed in the certificate"], stderr


def test_verify_and_resume_treat_the_pages_as_record_files(out, cli):
    assert record.unlisted_files(out) == []  # what a resumed run reports as in OUT but not certified
    code, stdout, _ = cli("verify", "--json", out)
    results = json.loads(stdout)
    assert code == 0 and len(results) == N and all(r["ok"] for r in results), [r["path"] for r in results if not r["ok"]]
    # an edited page is no record file wsianon wrote: stray (judged by nothing)
    page = out / record.card_page_name(1)
    page.write_text(page.read_text() + "<!-- notes -->")
    code, stdout, _ = cli("verify", "--json", out)
    bad = [r for r in json.loads(stdout) if not r["ok"]]
    assert code == 1 and [Path(r["path"]).name for r in bad] == ["0001.html"], bad


def test_a_record_of_fewer_slides_leaves_no_stale_page(out, cli, monkeypatch):
    report = json.loads((out / record.REPORT_NAME).read_text())
    (out / record.REPORT_NAME).write_text(json.dumps(dict(report, slides=report["slides"][:4])))
    code, _, stderr = cli("certify", out)  # written; the dropped slides' outputs make OUT not ready to share
    assert code == 1 and "OUT is NOT ready to share" in stderr, stderr
    assert _pages(out) == [record.card_page_name(1), record.card_page_name(2)]
    code, _, stderr = cli("certify", "--check", out)  # only the dropped slides' outputs are unaccounted for
    dropped = {o for s in report["slides"][4:] for o in s["outputs"]}
    assert code == 1 and {ln.split(": ")[1] for ln in _mismatches(stderr)} == dropped, stderr
    monkeypatch.setenv(record.PAGE_SLIDES_ENV, "10")  # one file again: no card page, no folder
    assert cli("certify", out)[0] == 1
    assert not (out / record.CARDS_DIR).exists()
    assert 'id="lazy-cards"' not in (out / record.REPORT_HTML).read_text() and (out / record.REPORT_HTML).read_text().count('class="card"') == 4


def test_an_interrupted_record_leaves_no_certificate(out, cli, monkeypatch):
    real = record.render_card_page

    def crash(data, slides, no, pages):
        if no == 2:
            raise OSError(28, "No space left on device")
        return real(data, slides, no, pages)

    monkeypatch.setattr(record, "render_card_page", crash)
    code, _, stderr = cli("certify", out)
    assert code == 1 and "cannot write the report/certificate" in stderr
    assert not (out / record.CERT_JSON).exists() and not (out / record.CERT_PDF).exists()
    assert cli("certify", "--check", out)[0] == 1


def test_pages_are_written_holding_one_pages_images(out, monkeypatch):
    held: list[int] = []
    real = record.render_card_page

    def spy(data, slides, no, pages):
        held.append(sum(1 for s in data.slides if s.thumbnail is not None))
        assert all(s.thumbnail for s in slides), "the page's own cards have their pictures"
        return real(data, slides, no, pages)

    monkeypatch.setattr(record, "render_card_page", spy)
    record.write_record(out)
    assert held == [3, 3, 1]


def test_a_page_whose_images_left_the_cache_renders_them_from_the_outputs(out, monkeypatch):
    """A paged record leaves the images in the record's cache and each page loads its own; an entry
    the cache no longer gives (dropped, unreadable) is rendered again from the slide's output, as
    ``collect`` renders it: every card still shows its output's thumbnail, no placeholder."""
    monkeypatch.setattr(record._Cache, "images", lambda self, slide, sig: None)
    rendered: list[object] = []
    real = record.render_slide_images
    monkeypatch.setattr(record, "render_slide_images", lambda main, *a, **k: rendered.append(main) or real(main, *a, **k))
    record.write_record(out)
    assert len(rendered) == 2 * N  # once by collect (nothing cached), once more when each page is written
    for rel in _pages(out):
        page = (out / rel).read_text()
        assert page.count('<img class="thumb" alt="thumbnail of ') == page.count('class="card"') > 0, rel


def test_the_review_sheet_of_a_paged_record_shows_every_outputs_thumbnail(out, cli, tmp_path):
    sheet = tmp_path / "sheet.html"
    assert cli("certify", out, "--review-sheet", sheet)[0] == 0
    text = sheet.read_text()
    assert text.count('alt="output"') == N
    assert f'src="{record.placeholder("not shared: ok")}" alt="output"' not in text


def test_card_pages_are_listed_in_their_numbers_order(tmp_path):
    (tmp_path / record.CARDS_DIR).mkdir()
    for no in (10000, 9999, 1):
        (tmp_path / record.card_page_name(no)).write_text("x")
    (tmp_path / record.CARDS_DIR / "notes.html").write_text("x")  # not named as a page: no record file
    assert record.card_pages(tmp_path) == [record.card_page_name(n) for n in (1, 9999, 10000)]
