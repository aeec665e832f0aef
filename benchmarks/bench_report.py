"""Record benchmark: the HTML report (one file, or paged), certificate JSON and PDF for a 10,000-slide job.

A synthetic report of N slides (realistic per-slide content: ~15 removed fields, ~10 checks, one
to six output files with SHA-256) with small JPEG thumbnails (224 px, as the record renders them;
a pool of distinct tissue-like images reused) is rendered; the script prints sizes and times, then
loads the page in headless Chromium (if installed) and times the load event and a filter.

Per-slide cost of collecting from real outputs (hash + thumbnail rendered from the output) is
measured on a few generated Aperio slides.

The record is measured both ways, each in a child process of its own (peak RSS apart): as one
self-contained file (``--mode single``: a record up to the page size; every record before paging)
and paged (``--mode paged``: the index and card pages of ``--page-size`` slides written page by
page, then the certificate listing them; Chromium opens the index, follows the first row's link
to its card page and opens the last card page, counting the cards shown with a decoded thumbnail).

Usage: python benchmarks/bench_report.py [--slides 10000] [--mode both|single|paged] [--page-size N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wsianon.pipeline import record  # noqa: E402

FORMATS = ["aperio", "ndpi", "mrxs", "ventana", "philips", "leica", "dicom"]
EXT = {"aperio": ".svs", "ndpi": ".ndpi", "ventana": ".bif", "philips": ".tiff", "leica": ".scn"}


def tissue(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    h, w = 160 + seed % 60, 224
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (220 + 30 * np.sin(x / (9 + seed % 7))).clip(0, 255)
    img[..., 1] = (150 + 60 * np.cos(y / (7 + seed % 5))).clip(0, 255)
    img[..., 2] = (200 + rng.integers(-25, 25, (h, w))).clip(0, 255)
    return Image.fromarray(img)


def synthetic(n: int) -> record.RecordData:
    rnd = random.Random(7)
    thumbs = [record.data_uri(tissue(i), record.THUMB_PX) for i in range(200)]
    assoc = [record.data_uri(tissue(1000 + i).resize((120, 90)), record.ASSOC_PX * 2) for i in range(50)]
    slides = []
    for i in range(n):
        fmt = FORMATS[i % len(FORMATS)]
        name = f"WSI-{hashlib.sha256(str(i).encode()).hexdigest()[:16]}"
        status = "quarantined" if i % 500 == 3 else "ok"
        nfiles = 6 if fmt == "mrxs" else (3 if fmt == "dicom" else 1)
        files = (
            [
                record.OutputFile(
                    f"{name}/{k:04d}.dcm" if fmt == "dicom" else (f"{name}/Data{k:04d}.dat" if fmt == "mrxs" and k else name + EXT.get(fmt, ".mrxs")),
                    rnd.randint(10**8, 3 * 10**9),
                    hashlib.sha256(f"{i}:{k}".encode()).hexdigest(),
                )
                for k in range(nfiles)
            ]
            if status == "ok"
            else []
        )
        slides.append(
            record.SlideRecord(
                slide=name,
                format=fmt,
                target="dicom" if fmt == "dicom" else "native",
                status=status,
                outputs=[f.rel for f in files],
                files=files,
                thumbnail=thumbs[i % len(thumbs)] if status == "ok" else None,
                images=[["thumbnail", assoc[i % len(assoc)]]] if status == "ok" else [],
                removed=[
                    {"kind": "image", "name": "label", "action": "removed", "where": "IFD 3"},
                    {"kind": "image", "name": "macro", "action": "removed", "where": "IFD 4"},
                ]
                + [{"kind": "field", "name": f"ImageDescription field {k}", "action": "removed", "where": "IFD 0"} for k in range(14)],
                checks=[
                    {"check": c, "ok": status == "ok" or c != "canary-scan", "detail": "detail text of a check without values"}
                    for c in (
                        "openslide-detect",
                        "pyramid-readable",
                        "levels",
                        "tiles-identical",
                        "associated-images",
                        "barcode-thumbnail",
                        "tiff-text",
                        "tiff-datetime",
                        "aperio-profile",
                        "canary-scan",
                    )
                ],
                error=None if status == "ok" else "verification failed; output quarantined",
            )
        )
    report = {
        "tool": "wsianon",
        "version": "0.1.0",
        "python": sys.version.split()[0],
        "created": "2026-12-04T09:00:00+00:00",
        "target": "native",
        "policy": {"label": "remove", "macro": "remove", "dates": "year", "rename": "pseudonym", "dicom_options": []},
    }
    return record.RecordData(report, slides, "sha256:0000", record.library_versions(), "2026-12-04T10:00:00+00:00")


def timed(fn):
    t0 = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t0


def per_slide_collect(work: Path, n: int = 8) -> float:
    """Seconds per slide to hash and render thumbnails from real outputs (no cache)."""
    from tests.fixtures.svs_gen import write_svs
    from wsianon.pipeline.jobs import JobConfig, run_job
    from wsianon.pipeline.keys import init_key

    init_key(work / "key")
    src = work / "src"
    src.mkdir()
    for i in range(n):
        write_svs(src / f"s{i}.svs")
    out = work / "out"
    run_job(JobConfig(inputs=[src], out=out, key_file=work / "key"))
    (work / "out.wsianon-record.sqlite").unlink()
    _, t = timed(lambda: record.collect(out))
    return t / n


def peak_rss_mb() -> float:
    """This process's peak resident set so far (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


SHOWN_JS = "[...document.querySelectorAll('#cards .card:not([hidden])')].filter(c => c.querySelector('img.thumb').naturalWidth > 0).length"


def bench_single(data: record.RecordData, work: Path, n: int) -> None:
    """The record as one file (what a record up to the page size is; every record before paging)."""
    html, t_html = timed(lambda: record.render_html(data))
    page = work / record.REPORT_HTML
    page.write_text(html)
    size = len(html.encode())
    del html
    out = work
    (out / record.REPORT_NAME).write_text(json.dumps(data.report))
    cert, t_cert = timed(lambda: record.build_certificate(out, data))
    cert_json = json.dumps(cert, indent=2)
    pdf, t_pdf = timed(lambda: record.certificate_pdf(cert))
    print(f"HTML render (one file): {t_html:.2f} s, {size / 1e6:.1f} MB")
    print(f"certificate JSON:       {t_cert:.2f} s (incl. hashing the report files), {len(cert_json) / 1e6:.1f} MB")
    print(f"certificate PDF:        {t_pdf:.2f} s, {len(pdf) / 1e6:.2f} MB, {pdf.count(b'/Type /Page ')} pages")
    print(f"peak RSS:               {peak_rss_mb():.0f} MB")
    try:
        from tests.fixtures.chromium import Chromium, find_chromium

        if find_chromium():
            with Chromium(timeout=300) as c:
                t_load = c.load(page)
                t_filter = c.evaluate(
                    "(() => {const t=performance.now(); const s=document.getElementById('fformat'); s.value='ndpi'; s.dispatchEvent(new Event('change')); return performance.now()-t;})()"
                )
                t_sort = c.evaluate("(() => {const t=performance.now(); document.querySelector('th[data-sort=size]').click(); return performance.now()-t;})()")
                visible = c.evaluate(SHOWN_JS)
                errs = c.errors()
            print(
                f"Chromium load event:    {t_load:.2f} s; filter {t_filter / 1000:.2f} s, sort {t_sort / 1000:.2f} s; {visible} cards shown (thumbnail decoded) per page; console errors: {len(errs)}"
            )
        else:
            print("Chromium:               not installed, load time not measured")
    except Exception as exc:
        print(f"Chromium:               failed ({type(exc).__name__}: {exc})")


def bench_paged(data: record.RecordData, work: Path, n: int, page_size: int) -> None:
    """The paged record: the index and the card pages written page by page, then the certificate."""
    out = work
    (out / record.REPORT_NAME).write_text(json.dumps(data.report))
    written, t_html = timed(lambda: record.write_html(out, data, page_size))
    pages = record.card_pages(out)
    total = sum(s for s, _ in written.values())
    index = written[record.REPORT_HTML][0]
    largest = max((written[p][0] for p in pages), default=0)
    cert, t_cert = timed(lambda: record.build_certificate(out, data, written))
    cert_json = json.dumps(cert, indent=2)
    pdf, t_pdf = timed(lambda: record.certificate_pdf(cert))
    print(
        f"HTML write (paged):     {t_html:.2f} s, {total / 1e6:.1f} MB in all: index {index / 1e6:.1f} MB + {len(pages)} card page(s) of {page_size} slides (largest {largest / 1e6:.1f} MB)"
    )
    print(f"certificate JSON:       {t_cert:.2f} s, {len(cert_json) / 1e6:.1f} MB, {len(cert['reports'])} report files listed")
    print(f"certificate PDF:        {t_pdf:.2f} s, {len(pdf) / 1e6:.2f} MB, {pdf.count(b'/Type /Page ')} pages")
    print(f"peak RSS:               {peak_rss_mb():.0f} MB")
    try:
        from tests.fixtures.chromium import Chromium, find_chromium

        if not find_chromium():
            print("Chromium:               not installed, load time not measured")
            return
        with Chromium(timeout=300) as c:
            t_index = c.load(out / record.REPORT_HTML)
            rows = c.evaluate("document.querySelectorAll('#slides tbody tr').length")
            info = c.evaluate("document.getElementById('pinfo').textContent")
            first = c.evaluate("document.querySelector('#slides tbody tr a').href")
            t_filter = c.evaluate(
                "(() => {const t=performance.now(); const s=document.getElementById('fformat'); s.value='ndpi'; s.dispatchEvent(new Event('change')); return performance.now()-t;})()"
            )
            t_sort = c.evaluate("(() => {const t=performance.now(); document.querySelector('th[data-sort=size]').click(); return performance.now()-t;})()")
            t0 = time.perf_counter()
            c.call("Page.navigate", session=True, url=first)
            c.wait_event("Page.loadEventFired")
            t_first = time.perf_counter() - t0
            target = first.rsplit("#card-", 1)[1]
            on_first = c.evaluate(SHOWN_JS)
            target_shown = c.evaluate(
                f"(() => {{const c=document.getElementById(decodeURIComponent('card-{target}')); return !!c && !c.hidden && c.querySelector('img.thumb').naturalWidth > 0;}})()"
            )
            t_last = c.load(out / pages[-1])
            on_last = c.evaluate(SHOWN_JS)
            errs = c.errors()
        print(f"Chromium index:         load {t_index:.2f} s; {rows} rows shown ({info}); filter {t_filter / 1000:.2f} s, sort {t_sort / 1000:.2f} s")
        print(
            f"Chromium card pages:    first row's link ({first.rsplit('/', 1)[1][:40]}…) {t_first:.2f} s, {on_first} cards shown, its card shown: {target_shown}; "
            f"last page {t_last:.2f} s, {on_last} cards shown; console errors: {len(errs)}"
        )
    except Exception as exc:
        print(f"Chromium:               failed ({type(exc).__name__}: {exc})")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slides", type=int, default=10000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--mode", choices=("both", "single", "paged"), default="both", help="both: each record in a child process of its own (peak RSS apart)")
    ap.add_argument("--page-size", type=int, default=None, help=f"slides per card page (default: {record.PAGE_SLIDES}, or ${record.PAGE_SLIDES_ENV})")
    ap.add_argument("--no-collect", action="store_true", help="skip the per-slide cost of collecting from real outputs")
    args, _ = ap.parse_known_args()
    page_size = record.page_slides(args.page_size)
    if args.mode == "both":
        for mode in ("single", "paged"):
            cmd = [sys.executable, __file__, "--slides", str(args.slides), "--mode", mode, "--page-size", str(page_size), "--no-collect"]
            if args.workdir:
                cmd += ["--workdir", str(args.workdir)]
            print(f"--- {mode}", flush=True)
            subprocess.run(cmd, check=False)
    work = Path(tempfile.mkdtemp(prefix="bench-report-", dir=args.workdir))
    try:
        if args.mode != "both":
            data, t_syn = timed(lambda: synthetic(args.slides))
            print(
                f"slides:                 {args.slides} ({sum(1 for s in data.slides if s.status == 'ok')} shared, {sum(len(s.files) for s in data.slides)} output files)"
            )
            print(f"synthetic data:         {t_syn:.2f} s, peak RSS with it {peak_rss_mb():.0f} MB")
            (bench_single if args.mode == "single" else lambda d, w, n: bench_paged(d, w, n, page_size))(data, work, args.slides)
        if not args.no_collect:
            cw = work / "collect"
            cw.mkdir()
            print(f"collect from outputs:   {per_slide_collect(cw) * 1000:.0f} ms per slide (SHA-256 + thumbnail + kept images from a small SVS, no cache)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
