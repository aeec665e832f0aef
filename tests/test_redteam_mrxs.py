"""Red team around MRXS, iSyntax and the names of things: identifiers hidden where the redactors
and verifiers did not look never reach OUT (slides, report, record, certificate), and
``wsianon verify`` fails on an output that still holds one.

Each place here was a leak before (the slide was verified and shared, or the report in OUT named
the identifier):

* MRXS: unknown Slidedat.ini key names in the report; text inside a binary NONHIER record
  OpenSlide does not read (histogram); blobs of the filter-level HIER record (text, a label photo) and of a zoom-level
  item outside the image grid (a label photo);
  index / Data file names (a numeric case number passes every text check); PNG tiles with tEXt,
  BMP tiles with bytes after their pixels; a name in a Windows-1252 Slidedat.ini (short ASCII runs);
* iSyntax: PIM_DP_IMAGE_DATA (a label JPEG) outside a label/macro object; unknown attribute,
  element and XML-attribute names in the report;
* names: a clean slide whose file name is not UTF-8 failed (internal error).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from tests.fixtures.isyntax_gen import label_jpeg, make_isyntax
from tests.fixtures.mrxs_gen import _jpeg, label_image, make_mrxs
from tests.fixtures.redteam_plant import (
    after_isyntax_root,
    before_wsi_derivation,
    isyntax_attr,
    isyntax_edit,
    plant_filter_level,
    plant_histogram_text,
    plant_ini_key_names,
    plant_member_names,
    plant_out_of_grid_in_page,
    plant_out_of_grid_tile,
    plant_png_tiles,
)
from tests.fixtures.svs_gen import write_svs
from wsianon.io.scan import Canary, Scanner


def _hits(root: Path, tokens: list[str]) -> list[str]:
    """Tokens in any file name or byte under ``root`` (ASCII, UTF-16, base64; inflated zlib streams too)."""
    sc = Scanner([Canary(t, t) for t in tokens])
    hits = []
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        hits += [f"name {rel}: {t}" for t in tokens if t.lower() in rel.lower()]
        if not p.is_file():
            continue
        hits += [f"{rel}: {f.canary}" for f in sc.scan_file(p, rel)]
        data = p.read_bytes()
        if b"FlateDecode" in data:  # the certificate PDF
            for m in re.finditer(rb"stream\r?\n", data):
                try:
                    text = zlib.decompressobj().decompress(data[m.end() : m.end() + (1 << 22)])
                except zlib.error:
                    continue
                hits += [f"{rel} (inflated): {t}" for t in tokens if t.encode().lower() in text.lower()]
    return sorted(set(hits))


def _run(cli, inputs, out: Path, *extra: str) -> tuple[int, dict, str]:
    code, stdout, stderr = cli("run", "--target", "native", *[str(p) for p in inputs], "-o", str(out), *extra)
    return code, json.loads((out / "wsianon-report.json").read_text()), stdout + stderr


def _checks(slide: dict) -> dict[str, bool]:
    return {c["check"]: c["ok"] for c in (slide.get("verification") or {}).get("checks", [])}


MRXS_TOKENS = {
    "keyname": "RTQXKEYNAME",
    "keyname2": "MRN4711",
    "hist": "RTQXHIST",
    "filter_text": "RTQXFLTTXT",
    "member_index": "RTQXIDXNAME",
    "member_data": "20210317-4711",
    "png": "RTQXPNGTXT",
    "bmp": "RTQXBMPTAIL",
}


def test_mrxs_hiding_places_never_reach_out(cli, tmp_path):
    src = tmp_path / "src"
    t = MRXS_TOKENS
    a = make_mrxs(src, "SLIDE-A1", images=2, levels=2)
    plant_ini_key_names(a, [f"{t['keyname']}_DOE_JANE", t["keyname2"]])
    b = make_mrxs(src, "SLIDE-B2", images=2, levels=2)
    plant_histogram_text(b, f"{t['hist']} Doe^Jane")
    c = make_mrxs(src, "SLIDE-C3", images=2, levels=2)
    plant_filter_level(c, bytes(range(256)) * 2 + f"{t['filter_text']} Doe^Jane".encode() + bytes(range(256)))
    d = make_mrxs(src, "SLIDE-D4", images=2, levels=2)
    plant_filter_level(d, _jpeg(label_image("RTQXFLTLBL")))
    e = make_mrxs(src, "SLIDE-E5", images=2, levels=2)
    plant_member_names(e, f"Index_{t['member_index']}.dat", f"{t['member_data']}.dat")
    f = make_mrxs(src, "SLIDE-F6", images=2, levels=2)
    plant_png_tiles(f, f"{t['png']} Doe^Jane")
    g = make_mrxs(src, "SLIDE-G7", images=2, levels=2)
    plant_png_tiles(g, None)  # clean PNG tiles: shared
    h = make_mrxs(src, "SLIDE-H8", images=2, levels=2)
    plant_png_tiles(h, f"{t['bmp']} Doe^Jane", fmt="BMP24")
    k = make_mrxs(src, "SLIDE-K9", images=2, levels=2)
    plant_png_tiles(k, None, fmt="BMP24")  # clean BMP tiles: shared
    grid = make_mrxs(src, "SLIDE-M10", images=2, levels=2)
    plant_out_of_grid_tile(grid, _jpeg(label_image("RTQXGRIDLBL")))
    grid2 = make_mrxs(src, "SLIDE-P12", images=2, levels=2)
    plant_out_of_grid_in_page(grid2, _jpeg(label_image("RTQXGRIDLBL")))
    cp = make_mrxs(src, "SLIDE-N11", images=2, levels=2)  # a Windows-1252 Slidedat.ini, a name in a safe key
    ini = cp.folder / "Slidedat.ini"
    ini.write_bytes(ini.read_bytes().replace(b"OBJECTIVE_NAME = Plan-Apochromat", "OBJECTIVE_NAME = Björn Ås".encode("cp1252")))

    out = tmp_path / "out"
    code, report, console = _run(cli, [x.mrxs for x in (a, b, c, d, e, f, g, h, k, grid, cp, grid2)], out)
    assert code == 1  # the PNG / BMP tiles with text are quarantined
    status = [s["status"] for s in report["slides"]]
    # the cp1252 name in a safe key is blanked (a safe key keeps printable ASCII only: round 4)
    # the out-of-grid item on a page chained to the end of Index.dat is refused (OpenSlide reads
    # a level's pages one after another: it draws the next level's image at level 0's origin);
    # on the level's own page OpenSlide refuses the output (an image row past the grid)
    assert status == ["ok"] * 5 + ["failed", "ok", "failed", "ok", "error", "ok", "failed"], status
    assert "next-page pointer" in report["slides"][9]["error"]
    assert _hits(out, list(t.values()) + ["Björn"]) == []
    assert not any("Björn".encode("cp1252") in p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert not any(v in console for v in t.values())
    placed = sorted(out.glob("*.mrxs"))
    assert len(placed) == 8
    for s in report["slides"]:
        if s["status"] == "ok":
            checks = _checks(s)
            assert checks["mrxs-unread-records-zero"] and checks["mrxs-member-names"], checks
    for m in placed:
        folder = m.with_suffix("")
        assert sorted(p.name for p in folder.iterdir()) == ["Data0000.dat", "Data0001.dat", "Data0002.dat", "Index.dat", "Slidedat.ini"]
        code, stdout, _ = cli("verify", str(m))
        assert code == 0, stdout[-2000:]
    # the label photos in the filter level and outside the image grid are gone (their blobs zeroed)
    for slide, text in ((d, "RTQXFLTLBL"), (grid, "RTQXGRIDLBL")):
        lbl = _jpeg(label_image(text))[-300:-236]  # entropy-coded data
        assert lbl in (slide.folder / "Data0000.dat").read_bytes()
        for p in placed + sorted((tmp_path / "out.quarantine").glob("*/*.mrxs")):
            assert lbl not in (p.with_suffix("") / "Data0000.dat").read_bytes()
    # the report names what it removed without the names the source chose
    names = [r["name"] + " " + r["where"] for s in report["slides"] for r in s["removed"]]
    assert any("[withheld]" in n for n in names)


def test_verify_fails_on_unread_records_and_member_names(cli, tmp_path):
    info = make_mrxs(tmp_path / "src", "SLIDE-V1", images=2, levels=2)
    out = tmp_path / "out"
    code, report, _ = _run(cli, [info.mrxs], out)
    assert code == 0
    (main,) = out.glob("*.mrxs")
    folder = main.with_suffix("")
    # text written into the (zeroed) histogram record of the output
    fname, off, ln = info.blobs["default"]
    p = folder / fname
    data = bytearray(p.read_bytes())
    assert not any(data[off : off + ln])  # zeroed by the redactor
    data[off + 10 : off + 18] = b"RTQXVRF1"
    p.write_bytes(bytes(data))
    code, stdout, _ = cli("verify", "--json", str(main))
    rep = json.loads(stdout)[0]
    failed = {c["check"] for c in rep["checks"] if not c["ok"]}
    assert code == 1 and "mrxs-unread-records-zero" in failed, failed
    assert "RTQXVRF1" not in stdout
    data[off + 10 : off + 18] = bytes(8)
    p.write_bytes(bytes(data))
    # a Data file under another name
    (folder / "Data0001.dat").rename(folder / "4711.dat")
    ini = folder / "Slidedat.ini"
    ini.write_bytes(ini.read_bytes().replace(b"FILE_1 = Data0001.dat", b"FILE_1 = 4711.dat"))
    code, stdout, _ = cli("verify", "--json", str(main))
    failed = {c["check"] for c in json.loads(stdout)[0]["checks"] if not c["ok"]}
    assert code == 1 and failed == {"mrxs-member-names", "names"}, failed  # (the name's number: red team 17)


def test_verify_fails_a_zoom_level_page_chained_elsewhere(cli, tmp_path):
    """OpenSlide reads a zoom level's data pages one after another in Index.dat; an output whose
    level-0 page points to a page elsewhere is drawn from other bytes than that chain names (here
    the level-1 record and page: its image at level 0's origin). ``verify`` fails it."""
    info = make_mrxs(tmp_path / "src", "SLIDE-V2", images=2, levels=2)
    out = tmp_path / "out"
    code, _report, _ = _run(cli, [info.mrxs], out)
    assert code == 0
    (main,) = out.glob("*.mrxs")
    code, stdout, _ = cli("verify", str(main))
    assert code == 0, stdout[-2000:]
    idx_path = main.with_suffix("") / "Index.dat"
    idx = bytearray(idx_path.read_bytes())
    (table,) = struct.unpack_from("<i", idx, 5 + len(info.canaries["SLIDE_ID"]))  # a keyed ID as long
    (rec,) = struct.unpack_from("<i", idx, table)
    (page,) = struct.unpack_from("<i", idx, rec + 4)
    count, nxt = struct.unpack_from("<ii", idx, page)
    assert nxt == 0
    first = struct.unpack_from("<iiii", idx, page + 8)
    struct.pack_into("<i", idx, page + 4, len(idx))  # a chain to a page at the end: item 0 again
    idx += struct.pack("<ii", 1, 0) + struct.pack("<iiii", *first)
    idx_path.write_bytes(bytes(idx))
    code, stdout, stderr = cli("verify", "--json", str(main))
    assert code == 1 and json.loads(stdout) == []
    assert "Index.dat" in stderr and "next-page pointer" in stderr, stderr
    # the verifier's own walk of the zoom levels (mrxs_hidden.zoom_items) refuses it too
    import configparser

    from wsianon.verify import mrxs_hidden

    cp = configparser.RawConfigParser()
    cp.read_string((main.with_suffix("") / "Slidedat.ini").read_text())
    with pytest.raises(ValueError, match="next-page pointer"):
        mrxs_hidden.zoom_items(bytes(idx), cp)


LABEL_B64 = base64.b64encode(label_jpeg("RTQXISXLBL")).decode()


def test_isyntax_image_data_and_names(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    wsi = src / "a-0001.isyntax"
    make_isyntax(wsi, padding=b"\n" * 40000)
    isyntax_edit(wsi, lambda s: before_wsi_derivation(s, isyntax_attr("PIM_DP_IMAGE_DATA", LABEL_B64, "0x1005")))
    root = src / "b-0002.isyntax"
    make_isyntax(root, padding=b"\n" * 40000)
    isyntax_edit(root, lambda s: after_isyntax_root(s, isyntax_attr("PIM_DP_IMAGE_DATA", LABEL_B64, "0x1005")))
    names = src / "c-0003.isyntax"
    make_isyntax(names, padding=b"\n" * 2000)
    isyntax_edit(
        names,
        lambda s: after_isyntax_root(s, "<RTQXELEM>x</RTQXELEM>\n").replace(
            '<Attribute Name="DICOM_MANUFACTURER"', '<Attribute RTQXXATTR_MRN4711="Doe" Name="DICOM_MANUFACTURER"', 1
        ),
    )
    out = tmp_path / "out"
    code, report, console = _run(cli, [wsi, root, names], out)
    assert code == 0, [(s["status"], s["error"]) for s in report["slides"]]
    frags = [LABEL_B64[i : i + 48] for i in range(200, len(LABEL_B64) - 48, 997)]
    assert _hits(out, ["RTQXISXLBL", "RTQXELEM", "RTQXXATTR", "MRN4711", *frags]) == []
    assert "RTQX" not in console
    # verify without a source fails on image data left outside a label / macro object
    (placed,) = [p for p in out.glob("*.isyntax") if _is(p, report, 0)]
    bad = tmp_path / "bad.isyntax"
    shutil.copy(placed, bad)
    isyntax_edit(bad, lambda s: before_wsi_derivation(s, isyntax_attr("PIM_DP_IMAGE_DATA", LABEL_B64, "0x1005")))
    code, stdout, _ = cli("verify", "--json", str(bad))
    failed = {c["check"] for c in json.loads(stdout)[0]["checks"] if not c["ok"]}
    assert code == 1 and "isyntax-profile" in failed, failed
    code, _, _ = cli("verify", str(placed))
    assert code == 0


def _is(p: Path, report: dict, i: int) -> bool:
    return report["slides"][i]["outputs"][0] == p.name


def test_undecodable_file_name_is_processed(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    name = os.fsdecode(b"Doe\xffJane-4711.svs")
    write_svs(src / name)
    out = tmp_path / "out"
    code, report, console = _run(cli, [src], out)
    assert code == 0, report["slides"][0]["error"]
    assert report["slides"][0]["status"] == "ok"
    assert _hits(out, ["Jane-4711", "Doe"]) == []
