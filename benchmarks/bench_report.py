"""Record benchmark: the HTML report, certificate JSON and PDF for a 10,000-slide job.

A synthetic report of N slides (realistic per-slide content: ~15 removed fields, ~10 checks, one
to six output files with SHA-256) with small JPEG thumbnails (224 px, as the record renders them;
a pool of distinct tissue-like images reused) is rendered; the script prints sizes and times, then
loads the page in headless Chromium (if installed) and times the load event and a filter.

Per-slide cost of collecting from real outputs (hash + thumbnail rendered from the output) is
measured on a few generated Aperio slides.

Usage: python benchmarks/bench_report.py [--slides 10000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slides", type=int, default=10000)
    ap.add_argument("--workdir", type=Path, default=None)
    args, _ = ap.parse_known_args()
    work = Path(tempfile.mkdtemp(prefix="bench-report-", dir=args.workdir))
    try:
        data, t_syn = timed(lambda: synthetic(args.slides))
        html, t_html = timed(lambda: record.render_html(data))
        page = work / record.REPORT_HTML
        page.write_text(html)
        out = work
        (out / record.REPORT_NAME).write_text(json.dumps(data.report))
        cert, t_cert = timed(lambda: record.build_certificate(out, data))
        cert_json = json.dumps(cert, indent=2)
        pdf, t_pdf = timed(lambda: record.certificate_pdf(cert))
        print(
            f"slides:                 {args.slides} ({sum(1 for s in data.slides if s.status == 'ok')} shared, {sum(len(s.files) for s in data.slides)} output files)"
        )
        print(f"synthetic data:         {t_syn:.2f} s")
        print(f"HTML render:            {t_html:.2f} s, {len(html.encode()) / 1e6:.1f} MB")
        print(f"certificate JSON:       {t_cert:.2f} s (incl. hashing the report files), {len(cert_json) / 1e6:.1f} MB")
        print(f"certificate PDF:        {t_pdf:.2f} s, {len(pdf) / 1e6:.2f} MB, {pdf.count(b'/Type /Page ')} pages")
        try:
            from tests.fixtures.chromium import Chromium, find_chromium

            if find_chromium():
                with Chromium(timeout=300) as c:
                    t_load = c.load(page)
                    t_filter = c.evaluate(
                        "(() => {const t=performance.now(); const s=document.getElementById('fformat'); s.value='ndpi'; s.dispatchEvent(new Event('change')); return performance.now()-t;})()"
                    )
                    t_sort = c.evaluate(
                        "(() => {const t=performance.now(); document.querySelector('th[data-sort=size]').click(); return performance.now()-t;})()"
                    )
                    visible = c.evaluate("document.querySelectorAll('.card:not([hidden])').length")
                    errs = c.errors()
                print(
                    f"Chromium load event:    {t_load:.2f} s; filter {t_filter / 1000:.2f} s, sort {t_sort / 1000:.2f} s; {visible} cards shown per page; console errors: {len(errs)}"
                )
            else:
                print("Chromium:               not installed, load time not measured")
        except Exception as exc:
            print(f"Chromium:               failed ({type(exc).__name__}: {exc})")
        cw = work / "collect"
        cw.mkdir()
        print(f"collect from outputs:   {per_slide_collect(cw) * 1000:.0f} ms per slide (SHA-256 + thumbnail + kept images from a small SVS, no cache)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
