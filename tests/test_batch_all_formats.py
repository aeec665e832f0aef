"""One batch with every native format: each slide verified clean, and no identifying
value anywhere in what the run shows or writes (stdout, stderr, report, every OUT byte)."""

from __future__ import annotations

import json
import os

import openslide

from wsianon.io.scan import Canary, Scanner

from .conftest import run_subprocess, tree_hashes
from .fixtures.bif_gen import make_bif
from .fixtures.mrxs_gen import make_mrxs
from .fixtures.ndpi_gen import make_ndpi_info
from .fixtures.philips_gen import make_philips
from .fixtures.scn_gen import make_scn
from .fixtures.svs_gen import write_svs

EXPECTED_VENDOR = {".svs": "aperio", ".ndpi": "hamamatsu", ".mrxs": "mirax", ".bif": "ventana", ".tiff": "philips", ".scn": "leica"}


def test_every_format_in_one_batch(tmp_path):
    src = tmp_path / "archive"
    src.mkdir()
    fixtures = [
        write_svs(src / "SVS-CASE-0001.svs"),
        make_ndpi_info(src / "NDPI-CASE-0002.ndpi"),
        make_bif(src / "BIF-CASE-0003.bif"),
        make_philips(src / "PHILIPS-CASE-0004.tiff"),
        make_scn(src / "SCN-CASE-0005.scn"),
    ]
    mrxs = make_mrxs(src, "MRXS-CASE-0006")
    canaries: dict[str, str] = {}
    for fx in fixtures:
        canaries.update({f"{type(fx).__name__}:{k}": v for k, v in fx.canaries.items()})
    canaries.update({f"mrxs:{k}": v for k, v in mrxs.canaries.items()})
    stems = ["SVS-CASE-0001", "NDPI-CASE-0002", "BIF-CASE-0003", "PHILIPS-CASE-0004", "SCN-CASE-0005", "MRXS-CASE-0006"]
    before = tree_hashes(src)
    out = tmp_path / "out"
    # a fixed key: the keyed UIDs (2.25.<39 digits>) are then the same every run. With a new key each
    # run, one in ~10^4 runs drew a UID holding a time canary's digits ("150926" of 15:09:26), which
    # the raw byte scan below matches (the run itself verified that output: its scan did not count it)
    key = tmp_path / "key"
    key.write_text("5a" * 32 + "\n")
    key.chmod(0o600)
    res = run_subprocess("run", src, "-o", out, "--workers", "2", "--key-file", key)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((out / "wsianon-report.json").read_text())
    assert sorted(s["format"] for s in report["slides"]) == sorted(["aperio", "ndpi", "ventana", "philips", "leica", "mrxs"])
    assert all(s["status"] == "ok" and s["verification"]["ok"] for s in report["slides"])
    # every output opens as its vendor format, with no label or macro
    mains = [p for p in out.iterdir() if p.suffix in EXPECTED_VENDOR]
    assert len(mains) == 6
    for p in mains:
        assert openslide.OpenSlide.detect_format(str(p)) == EXPECTED_VENDOR[p.suffix]
        with openslide.OpenSlide(str(p)) as s:
            assert not ({"label", "macro"} & set(s.associated_images.keys())), p.suffix
    # nothing identifying anywhere: console, report, any byte of any output file
    shown = res.stdout + res.stderr + (out / "wsianon-report.json").read_text()
    scannable = {k: v for k, v in canaries.items() if len(v) >= 5}
    for k, v in scannable.items():
        assert v not in shown, k
    for stem in stems:
        assert stem not in shown
    scanner = Scanner([Canary(k, v) for k, v in scannable.items()] + [Canary("stem", s) for s in stems])
    for f in out.rglob("*"):
        if f.is_file():
            assert scanner.scan_file(f) == [], f.relative_to(out)
            assert not any(s in f.name for s in stems)
    # inputs untouched, private files outside OUT
    assert tree_hashes(src) == before
    assert (tmp_path / "out.mapping.csv").exists()
    assert oct(os.stat(tmp_path / "out.mapping.csv").st_mode & 0o777) == "0o600"
