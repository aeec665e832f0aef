"""Red team 16 (stop 39, MRXS native route): bytes of the Data file headers and of Index.dat that
no reader uses were copied into verified outputs.

* F1: a Data file header (a 5-byte version, then the 32-byte SLIDE_ID field) that is not exactly
  the version and the Slidedat.ini SLIDE_ID passed unchanged (an MRN and birth date, another
  slide's ID, a version "98765").  Now the route writes every Data file header as the output
  Index.dat's own header (its version, "01.02" -- the one OpenSlide reads -- and the keyed
  SLIDE_ID), and ``mrxs-slide-id`` / ``closed-world-bytes`` require exactly that.
* F2a: the two reserved int32 of a NONHIER page item (before offset, size, file number; OpenSlide
  requires them 0 for the records it reads) were copied for records OpenSlide does not read.
* F2b: items of a HIER record of a non-zoom layer ("Slide filter level": OpenSlide draws none)
  were copied whatever their image index and offset held.

Now the route writes those pages in one form (a NONHIER page: one item or none, next-page pointer
and reserved values zero; a non-zoom HIER record's page: no item) and ``mrxs-index-form`` and
``closed-world-bytes`` refuse any other value, from the output alone.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import openslide
import pytest

from tests.fixtures.mrxs_gen import make_mrxs

SID_FIELD = {
    "digits": (None, b"98765432197901010000000000000000"),  # an MRN and a birth date
    "stale": (None, b"7C691E3F2DC6412781AECA3E3B3213C1"),  # another slide's SLIDE_ID
    "case": (None, b"S19-4711-98765432-19790101-00000"),
    "version": (b"98765", None),
}
RESERVED = b"S19-4711"
CAPACITY = b"98765432 19790101 4711 0123456789 555-0142"
HISTOGRAM_SLOT = 5  # source nonhier table: Thumbnail, Barcode, Preview, WholeSlide, ProfileXML, histogram
FILTER_RECORD = 3  # hier table: zoom levels 0..2, then FilterLevel_0


def _run(cli, src: Path, out: Path) -> tuple[int, dict]:
    code, _stdout, _stderr = cli("run", "--target", "native", str(src), "-o", str(out))
    return code, json.loads((out / "wsianon-report.json").read_text())


def _checks(slide: dict) -> dict[str, bool]:
    return {c["check"]: c["ok"] for c in (slide.get("verification") or {}).get("checks", [])}


def _sid(folder: Path) -> str:
    m = re.search(rb"SLIDE_ID\s*=\s*([^\r\n]+)", (folder / "Slidedat.ini").read_bytes())
    assert m
    return m.group(1).strip().decode()


def _tables(folder: Path) -> tuple[bytearray, int, int]:
    idx = bytearray((folder / "Index.dat").read_bytes())
    hier_t, non_t = struct.unpack_from("<ii", idx, 5 + len(_sid(folder)))
    return idx, hier_t, non_t


def _page(idx: bytes, table: int, slot: int) -> int:
    (ptr,) = struct.unpack_from("<i", idx, table + 4 * slot)
    return struct.unpack_from("<i", idx, ptr + 4)[0]


def plant_data_header(folder: Path, variant: str) -> bytes:
    version, field = SID_FIELD[variant]
    f = folder / "Data0001.dat"
    b = bytearray(f.read_bytes())
    if version:
        b[0:5] = version
    if field:
        b[5:37] = field
    f.write_bytes(bytes(b))
    return version or field or b""


def plant_reserved(folder: Path) -> int:
    """The histogram record's page: its two reserved values hold text; the offset written to."""
    idx, _hier_t, non_t = _tables(folder)
    # the last record in the table: the histogram (an output's table lost the removed records)
    slot = max(k for k in range(HISTOGRAM_SLOT + 1) if struct.unpack_from("<i", idx, non_t + 4 * k)[0])
    page = _page(idx, non_t, slot)
    idx[page + 8 : page + 16] = RESERVED
    (folder / "Index.dat").write_bytes(bytes(idx))
    return page + 8


def plant_filter_items(folder: Path) -> list[bytes]:
    """A page of length-0 items for the filter-level record, text in their image indices."""
    idx, hier_t, _non_t = _tables(folder)
    (rec,) = struct.unpack_from("<i", idx, hier_t + 4 * FILTER_RECORD)
    chunks = [CAPACITY[i : i + 4].ljust(4, b" ") for i in range(0, len(CAPACITY), 4)]
    items = b"".join(c + struct.pack("<iii", 0, 0, 0) for c in chunks)
    page = len(idx)
    idx += struct.pack("<ii", len(chunks), 0) + items
    struct.pack_into("<i", idx, rec + 4, page)
    (folder / "Index.dat").write_bytes(bytes(idx))
    return chunks


def _expected_header(out_folder: Path) -> bytes:
    return b"01.02" + _sid(out_folder).encode()


def _one_output(out: Path) -> Path:
    (main,) = sorted(out.glob("*.mrxs"))
    return main


def _assert_opens(main: Path) -> None:
    with openslide.OpenSlide(str(main)) as s:
        assert s.level_count == 3
        s.read_region((0, 0), 0, (64, 64))


# -- F1: the Data file headers ---------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(SID_FIELD))
def test_route_writes_every_data_header_in_one_form(cli, tmp_path, variant):
    info = make_mrxs(tmp_path / "src")
    planted = plant_data_header(info.folder, variant)
    out = tmp_path / "out"
    code, report = _run(cli, info.mrxs, out)
    assert code == 0, [s["status"] for s in report["slides"]]
    main = _one_output(out)
    folder = main.with_suffix("")
    header = _expected_header(folder)
    assert (folder / "Index.dat").read_bytes()[: len(header)] == header
    for f in sorted(folder.glob("Data*.dat")):
        data = f.read_bytes()
        assert data[: len(header)] == header, f.name
        assert planted not in data
    assert _checks(report["slides"][0])["mrxs-slide-id"] is True
    _assert_opens(main)


@pytest.mark.parametrize("variant", sorted(SID_FIELD))
def test_verify_refuses_a_data_header_in_another_form(cli, tmp_path, variant):
    info = make_mrxs(tmp_path / "src")
    out = tmp_path / "out"
    code, _report = _run(cli, info.mrxs, out)
    assert code == 0
    main = _one_output(out)
    plant_data_header(main.with_suffix(""), variant)
    code, stdout, _ = cli("verify", str(main))
    assert code == 1, stdout[-2000:]
    assert "FAIL mrxs-slide-id" in stdout
    assert "FAIL closed-world-bytes" in stdout


def test_a_data_file_shorter_than_its_header_is_refused(tmp_path):
    from wsianon.converters.mrxs import MrxsConverter
    from wsianon.errors import CorruptInput

    info = make_mrxs(tmp_path / "src")
    idx, _h, non_t = _tables(info.folder)
    # a Data file that none of the records uses, cut inside its header
    (info.folder / "Data0002.dat").write_bytes(b"01.02" + _sid(info.folder)[:10].encode())
    for slot in (4, 5):  # ProfileXML and the histogram lie in Data0002: their pages point nowhere
        struct.pack_into("<i", idx, non_t + 4 * slot, 0)
    (info.folder / "Index.dat").write_bytes(bytes(idx))
    conv = MrxsConverter()
    with pytest.raises(CorruptInput, match="shorter than its header"):
        conv.plan(conv.inspect(info.mrxs), _ctx())


def test_a_tile_inside_the_data_header_is_refused(tmp_path):
    from wsianon.converters.mrxs import MrxsConverter
    from wsianon.errors import CorruptInput

    info = make_mrxs(tmp_path / "src")
    idx, hier_t, _n = _tables(info.folder)
    page = _page(idx, hier_t, 0)
    struct.pack_into("<i", idx, page + 8 + 4, 10)  # level 0's first image at offset 10 of its file
    (info.folder / "Index.dat").write_bytes(bytes(idx))
    with pytest.raises(CorruptInput, match="inside the data file's header"):
        MrxsConverter().inspect(info.mrxs)


def _ctx():
    from tests.test_mrxs import ctx

    return ctx()


# -- F2: Index.dat values no reader uses -----------------------------------------------------------


def test_route_zeroes_the_reserved_values_of_a_nonhier_page(cli, tmp_path):
    info = make_mrxs(tmp_path / "src")
    at = plant_reserved(info.folder)
    out = tmp_path / "out"
    code, report = _run(cli, info.mrxs, out)
    assert code == 0, [s["status"] for s in report["slides"]]
    main = _one_output(out)
    folder = main.with_suffix("")
    idx, _h, non_t = _tables(folder)
    assert RESERVED not in idx
    for slot in range(6):  # every kept record: one item, no next page, reserved values zero
        (ptr,) = struct.unpack_from("<i", idx, non_t + 4 * slot)
        if ptr:
            page = _page(idx, non_t, slot)
            assert struct.unpack_from("<iiii", idx, page) == (1, 0, 0, 0)
    assert at > 0 and _checks(report["slides"][0])["mrxs-index-form"] is True
    _assert_opens(main)


def test_route_empties_the_pages_of_a_non_zoom_layer(cli, tmp_path):
    info = make_mrxs(tmp_path / "src")
    chunks = plant_filter_items(info.folder)
    out = tmp_path / "out"
    code, report = _run(cli, info.mrxs, out)
    assert code == 0, [s["status"] for s in report["slides"]]
    main = _one_output(out)
    idx, hier_t, _n = _tables(main.with_suffix(""))
    assert struct.unpack_from("<ii", idx, _page(idx, hier_t, FILTER_RECORD)) == (0, 0)
    for c in chunks[:-1]:  # the last one is mostly padding
        assert c not in idx
    assert _checks(report["slides"][0])["mrxs-index-form"] is True
    _assert_opens(main)


def _verified(cli, tmp_path) -> Path:
    info = make_mrxs(tmp_path / "src")
    out = tmp_path / "out"
    code, _report = _run(cli, info.mrxs, out)
    assert code == 0
    main = _one_output(out)
    code, stdout, _ = cli("verify", str(main))
    assert code == 0, stdout[-2000:]
    return main


def test_a_clean_slide_passes_the_new_checks(cli, tmp_path):
    """No false positive: a clean fixture verifies with both checks (run and a later verify)."""
    info = make_mrxs(tmp_path / "src", bom=True, crlf=True)
    out = tmp_path / "out"
    code, report = _run(cli, info.mrxs, out)
    assert code == 0
    checks = _checks(report["slides"][0])
    assert checks["mrxs-index-form"] is True and checks["mrxs-slide-id"] is True and checks["closed-world-bytes"] is True
    code, stdout, _ = cli("verify", str(_one_output(out)))
    assert code == 0 and "ok   mrxs-index-form" in stdout, stdout[-2000:]


def _tamper_reserved(folder: Path) -> None:
    plant_reserved(folder)


def _tamper_filter_items(folder: Path) -> None:
    plant_filter_items(folder)


def _tamper_next_pointer(folder: Path) -> None:
    idx, _h, non_t = _tables(folder)
    struct.pack_into("<i", idx, _page(idx, non_t, 0) + 4, 16)  # a next-page pointer inside the file
    (folder / "Index.dat").write_bytes(bytes(idx))


def _tamper_second_item(folder: Path) -> None:
    """The thumbnail record's page with a second item (OpenSlide reads the first only)."""
    idx, _h, non_t = _tables(folder)
    page = _page(idx, non_t, 0)
    extra = len(idx)
    idx += struct.pack("<ii", 2, 0) + bytes(idx[page + 8 : page + 28]) + b"S19-4711" + struct.pack("<iii", 0, 0, 0)
    (ptr,) = struct.unpack_from("<i", idx, non_t)
    struct.pack_into("<i", idx, ptr + 4, extra)
    (folder / "Index.dat").write_bytes(bytes(idx))


@pytest.mark.parametrize("tamper", [_tamper_reserved, _tamper_filter_items, _tamper_next_pointer, _tamper_second_item], ids=lambda f: f.__name__)
def test_verify_refuses_other_values_in_index_pages(cli, tmp_path, tamper):
    main = _verified(cli, tmp_path)
    tamper(main.with_suffix(""))
    code, stdout, _ = cli("verify", str(main))
    assert code == 1, stdout[-2000:]
    assert "FAIL mrxs-index-form" in stdout
    assert "S19" not in stdout and "9876" not in stdout
