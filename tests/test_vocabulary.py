"""Verification that does not depend on the redactor's inventory (issue 8, 4(b) and 4(c)).

* ``wsianon verify OUT_FILE`` (no source) passes on every output of ``wsianon run``
  (it used to call our own NDPI, Philips and MRXS outputs NOT CLEAN) and fails on a
  raw slide and on a slide another tool anonymized only partly, with or without
  ``--allow-generic`` (a partly anonymized Philips file used to pass as CLEAN).
* Text planted outside pixel data is a vocabulary finding (offset and kind, never the value).
* Vocabulary values are not identifiers: a GT450 slide whose ScannerType names the
  model printed in the kept banner, and an MRXS whose profile XML holds a word that
  Slidedat.ini also carries, are placed, not quarantined.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wsianon.verify import canaries as cn
from wsianon.verify import vocabulary as vb

from .fixtures.bif_gen import make_bif
from .fixtures.mrxs_gen import CANARIES as MRXS_CANARIES
from .fixtures.mrxs_gen import make_mrxs
from .fixtures.ndpi_gen import make_ndpi_info
from .fixtures.philips_gen import make_philips
from .fixtures.scn_gen import make_scn
from .fixtures.svs_gen import write_svs

SUFFIXES = (".svs", ".ndpi", ".bif", ".tiff", ".scn", ".mrxs")


def _all_formats(src: Path) -> list:
    src.mkdir(parents=True, exist_ok=True)
    return [
        write_svs(src / "SVS-CASE-0001.svs"),
        write_svs(src / "GT-CASE-0007.svs", gt450=True, extra={"ScannerType": "GT450"}),
        make_ndpi_info(src / "NDPI-CASE-0002.ndpi"),
        make_bif(src / "BIF-CASE-0003.bif"),
        make_philips(src / "PHILIPS-CASE-0004.tiff"),
        make_scn(src / "SCN-CASE-0005.scn"),
        make_mrxs(src, "MRXS-CASE-0006"),
    ]


def _verify(cli, path: Path, *extra: str) -> tuple[int, list[dict]]:
    code, stdout, _ = cli("verify", str(path), "--json", *extra)
    return code, json.loads(stdout)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    from typer.testing import CliRunner

    from wsianon.cli import app

    root = tmp_path_factory.mktemp("vocab")
    src = root / "src"
    _all_formats(src)
    out = root / "out"
    res = CliRunner().invoke(app, ["run", str(src), "-o", str(out)], catch_exceptions=False)
    report = json.loads((out / "wsianon-report.json").read_text())
    return src, out, res.exit_code, report


def test_own_outputs_of_every_format_are_clean_without_source(batch, cli):
    src, out, code, report = batch
    # every slide placed, none quarantined (the GT450 slide included)
    assert code == 0, [(s["format"], s["status"], s["error"]) for s in report["slides"]]
    assert sorted(s["format"] for s in report["slides"]) == sorted(["aperio", "aperio", "ndpi", "ventana", "philips", "leica", "mrxs"])
    for s in report["slides"]:
        checks = {c["check"]: c["ok"] for c in s["verification"]["checks"]}
        assert checks.get("vocabulary") is True, s["format"]
    outs = sorted(p for p in out.iterdir() if p.suffix in SUFFIXES)
    assert len(outs) == 7
    for p in outs:
        for extra in ((), ("--allow-generic",)):
            code, res = _verify(cli, p, *extra)
            failed = [c for c in res[0]["checks"] if not c["ok"]]
            assert code == 0 and res[0]["ok"], (p.suffix, extra, failed)
            assert any(c["check"] == "vocabulary" and c["ok"] for c in res[0]["checks"])


def test_raw_slides_are_not_clean_without_source(batch, cli):
    src, _, _, _ = batch
    raws = sorted(p for p in src.iterdir() if p.suffix in SUFFIXES)
    assert len(raws) == 7
    for p in raws:
        code, res = _verify(cli, p)
        assert code == 1, p.name
        voc = next(c for c in res[0]["checks"] if c["check"] == "vocabulary")
        assert not voc["ok"], p.name


def _partly_anonymized_philips(path: Path, drop_vendor: bool) -> Path:
    """Another tool's work: the label (and macro) photos blanked in the XML, nothing else
    (``drop_vendor``: also the Software tag, so the file no longer sniffs as Philips)."""
    fx = make_philips(path)
    data = bytearray(path.read_bytes())
    for b64 in (fx.label_b64, fx.macro_b64):
        i = data.find(b64.encode())
        assert i > 0
        data[i : i + len(b64)] = b" " * len(b64)
    if drop_vendor:
        i = data.find(b"Philips DP v1.0")
        data[i : i + 15] = b" " * 15
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("drop_vendor", [False, True])
def test_partial_anonymization_by_another_tool_fails_with_and_without_allow_generic(cli, tmp_path, drop_vendor):
    p = _partly_anonymized_philips(tmp_path / "other-tool.tiff", drop_vendor)
    for extra in ((), ("--allow-generic",)):
        code, stdout, stderr = cli("verify", str(p), "--json", *extra)
        assert code == 1, (extra, stdout[-500:])
        if stdout.strip().startswith("["):
            res = json.loads(stdout)
            if res:
                assert not res[0]["ok"]
                voc = [c for c in res[0]["checks"] if c["check"] == "vocabulary"]
                assert voc and not voc[0]["ok"]
                # findings name offsets and kinds, never the value
                assert "PHSERIAL" not in stdout and "PHOPERATOR" not in stdout


def test_planted_text_outside_pixel_data_is_a_finding_without_its_value(batch, tmp_path):
    _, out, _, _ = batch
    svs = next(p for p in out.iterdir() if p.suffix == ".svs")
    assert vb.scan_tiff(svs, "aperio") == []
    planted = tmp_path / "planted.svs"
    data = bytearray(svs.read_bytes())
    for token, enc in (("Jane Doe Hospital", "utf-8"), ("Smith", "utf-16-le"), ("Smith", "utf-16-be")):
        data += b"\0" * 16 + token.encode(enc)
    planted.write_bytes(bytes(data))
    found = vb.scan_tiff(planted, "aperio")
    assert {f.kind for f in found} == {"text", "utf-16le", "utf-16be"}
    assert all(f.offset >= len(svs.read_bytes()) for f in found)
    assert "Smith" not in vb.summarize(found) and "Jane" not in vb.summarize(found)


def test_vocabulary_tokens():
    v = vb.vocabulary("aperio")
    assert vb.unknown_tokens("Aperio Leica Biosystems GT450 v1.0.1\r\n1024x768 (256x256) JPEG/RGB Q=70|AppMag = 20|MPP = 0.4990", v) == []
    assert vb.unknown_tokens("ScanScope ID = |Filename = |Date = |User = ", v) == []
    assert vb.unknown_tokens("Filename = CMU-1", v) == ["CMU-1"]
    assert vb.unknown_tokens("User = Doe^Jane", v)
    assert vb.unknown_tokens("WSI-0123456789abcdef 2.25.1234567 59D84AFFFE5AE328534C8537DE575C42", v) == []


def test_vocabulary_values_are_not_canaries():
    assert cn.is_vocabulary("GT450", "aperio")
    assert cn.is_vocabulary("Brightfield", "mrxs")
    assert not cn.is_vocabulary("SSID-CANARY-4417", "aperio")
    assert not cn.is_vocabulary("03/14/17", "aperio")  # numbers and dates stay canaries
    # accession and case numbers stay canaries although the vocabulary check passes their
    # letter-and-digit pieces as model numbers (red team stop 40: "S19-4711" was dropped)
    for fmt in ("aperio", "ndpi", "leica", "mrxs", "dicom"):
        for value in ("S19-4711", "S19-12345", "AB-1234", "Case S19-4711"):
            assert not cn.is_vocabulary(value, fmt), (fmt, value)
    assert cn.is_vocabulary("C13220-01", "ndpi") and cn.is_vocabulary("NanoZoomer (C13220-01)", "ndpi")  # a vocabulary pattern
    assert cn.is_vocabulary("iec61966-2.1", "aperio")  # a vocabulary word
    from wsianon.io.scan import Canary

    kept = cn.union([Canary("ScannerType", "GT450"), Canary("User", "USER-CANARY-5e0c1f")], [], "aperio")
    assert [c.value for c in kept] == ["USER-CANARY-5e0c1f"]


def test_independent_harvest_finds_values_the_inventory_does_not_name(tmp_path):
    fx = write_svs(tmp_path / "s.svs", extra={"Unknown Vendor Key": "UNLISTED-CANARY-8812"})
    values = {c.value for c in cn.harvest(fx.path, "aperio")}
    assert "UNLISTED-CANARY-8812" in values and "SSID-CANARY-4417" in values
    assert "GT450" not in values and "20" not in values  # vocabulary and structure are not canaries


def test_mrxs_profile_word_also_in_slidedat_is_placed(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_mrxs(src, "CASE-MRXS-0042", canaries={**MRXS_CANARIES, "ProfileName": "Brightfield"})
    assert b"Brightfield" in (src / "CASE-MRXS-0042" / "Slidedat.ini").read_bytes()
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", str(src), "-o", str(out))
    report = json.loads((out / "wsianon-report.json").read_text())
    (s,) = report["slides"]
    assert code == 0 and s["status"] == "ok", s["verification"]


def test_gt450_scanner_model_in_banner_and_scannertype_is_placed(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    fx = write_svs(src / "GT-CASE-0009.svs", gt450=True, extra={"ScannerType": "GT450"})
    raw = fx.path.read_bytes()
    assert b"Aperio Leica Biosystems GT450" in raw and b"ScannerType = GT450" in raw
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", str(src), "-o", str(out))
    report = json.loads((out / "wsianon-report.json").read_text())
    (s,) = report["slides"]
    assert code == 0 and s["status"] == "ok", s["verification"]
    (o,) = [p for p in out.iterdir() if p.suffix == ".svs"]
    assert b"Aperio Leica Biosystems GT450" in o.read_bytes()  # the banner is kept
