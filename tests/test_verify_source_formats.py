"""``wsianon verify OUTPUT --source ORIGINAL`` for the formats whose own check compares the pyramid
(Leica SCN: pages paired through the XML; MRXS: the Data files' tile blobs).

Found by the fuzzers' new agreement check (stop 42): ``verify --source`` failed every clean SCN and
MRXS output ``run`` had verified ("tiles-identical: tifffile could not read the source's pyramid
pages"). It ran the TIFF level comparison, which those formats leave to their hook (``run`` does
not run it for them), and gave the hook the output in place of its source, so the hook compared
the output with itself.  Now the hook gets the source, as in ``run``: a clean output verifies, a
changed tile fails, and a source of another format fails the comparison."""

from __future__ import annotations

from pathlib import Path

import pytest
import tifffile

from .fixtures.mrxs_gen import make_mrxs
from .fixtures.scn_gen import make_scn
from .fixtures.svs_gen import write_svs


def _source(fmt: str, d: Path) -> Path:
    d.mkdir()
    if fmt == "scn":
        return make_scn(d / "case.scn").path
    return make_mrxs(d, "case", images=2, levels=2).mrxs


def _run(cli, src: Path, out: Path) -> Path:
    code, _o, err = cli("run", src, "-o", out)
    assert code == 0, err
    (main,) = [p for p in out.iterdir() if p.suffix in (".scn", ".mrxs")]
    return main


def _verify(cli, out_main: Path, src: Path) -> tuple[int, dict[str, str]]:
    code, stdout, _err = cli("verify", out_main, "--source", src)
    checks = {}
    for line in stdout.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and parts[0] in ("ok", "FAIL") and ":" in parts[1]:
            name, detail = parts[1].split(":", 1)
            checks[name] = f"{parts[0]}:{detail}"
    return code, checks


TILES = {"scn": "leica-tiles-identical", "mrxs": "mrxs-tiles-identical"}


@pytest.mark.parametrize("fmt", ["scn", "mrxs"])
def test_a_clean_output_verifies_against_its_source(fmt, cli, tmp_path):
    src = _source(fmt, tmp_path / "src")
    main = _run(cli, src, tmp_path / "out")
    code, checks = _verify(cli, main, src)
    assert code == 0, checks
    assert checks[TILES[fmt]].startswith("ok:") and "tiles-identical" not in checks, checks


def _flip_in_a_tile(fmt: str, main: Path) -> None:
    """One byte in the middle of a level tile's coded data of the output changed."""
    if fmt == "scn":
        with tifffile.TiffFile(main) as tf:
            page = next(p for p in tf.pages if p.is_tiled and max(p.databytecounts) > 64)
            k = max(range(len(page.databytecounts)), key=lambda i: page.databytecounts[i])
            at = page.dataoffsets[k] + page.databytecounts[k] // 2
        path = main
    else:
        path = max(
            (main.with_suffix("") / n for n in (p.name for p in main.with_suffix("").iterdir()) if n.lower().startswith("data")), key=lambda p: p.stat().st_size
        )
        at = path.stat().st_size // 2
    b = bytearray(path.read_bytes())
    b[at] ^= 0x5A
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("fmt", ["scn", "mrxs"])
def test_a_changed_tile_fails_against_the_source(fmt, cli, tmp_path):
    src = _source(fmt, tmp_path / "src")
    main = _run(cli, src, tmp_path / "out")
    _flip_in_a_tile(fmt, main)
    code, checks = _verify(cli, main, src)
    assert code == 1 and checks[TILES[fmt]].startswith("FAIL:"), checks


def test_a_source_of_another_format_fails_the_comparison(cli, tmp_path):
    """Either way round: an SVS output against an SCN source gave the Aperio hook the Leica
    source's snapshot, and the audit ended in "internal error (TypeError)"."""
    src = _source("scn", tmp_path / "src")
    main = _run(cli, src, tmp_path / "out")
    other = write_svs(tmp_path / "other.svs", size=(512, 384)).path
    code, checks = _verify(cli, main, other)
    assert code == 1 and checks["tiles-identical"].startswith("FAIL:") and "aperio" in checks["tiles-identical"], checks
    code, out, _err = cli("run", other, "-o", tmp_path / "out2")
    assert code == 0
    (svs_out,) = [p for p in (tmp_path / "out2").iterdir() if p.suffix == ".svs"]
    code, checks = _verify(cli, svs_out, src)
    assert code == 1 and checks["tiles-identical"].startswith("FAIL:") and "leica" in checks["tiles-identical"], checks
