"""iSyntax vocabulary scan (issue 8, 4(b); issue 15): ``wsianon verify OUT`` without a source judges
every printable run of the XML header against the iSyntax vocabulary, parses the coded tables as
bounded numbers, and treats the body as opaque coded data whose identity only the source can prove.

* A clean output (also with a blank label and a kept macro) passes without the source.
* Text planted in the header fails without the source: an extra attribute with free text, an
  attribute whose *name* is identifying but whose value is empty (the attribute-level closed-world
  check does not look at empty attributes), an ObjectType, the padding before CR LF EOT, a coded table.
* Findings never carry the planted value.
* The limit, stated by a test: text planted in the body's coded data is not found without the
  source; with the source, body-identical fails.
"""

from __future__ import annotations

import base64
import json
import struct

import pytest

from tests.fixtures.isyntax_gen import partial_block_header_table, make_isyntax
from tests.fixtures.native_helpers import cli_run_ok
from wsianon.verify.isyntax_text import TableError, parse_block_header_table, scan_isyntax

PLANT = "Jane Roe"


@pytest.fixture(scope="module")
def outs(tmp_path_factory):
    """(source, output) pairs of a default run and of a --label blank --macro keep run."""
    from typer.testing import CliRunner

    from wsianon.cli import app

    root = tmp_path_factory.mktemp("isxvocab")
    src = root / "in"
    src.mkdir()
    make_isyntax(src / "CASE-IS-V1.isyntax", order="a")
    src2 = root / "in2"
    src2.mkdir()
    make_isyntax(src2 / "CASE-IS-V2.isyntax", order="b", seed=16)

    def cli(*args):
        res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        return res.exit_code, res.stdout, res.stderr

    pairs = []
    for s, extra in ((src, ()), (src2, ("--label", "blank", "--macro", "keep"))):
        out = root / f"out-{s.name}"
        cli_run_ok(cli, [s], out, *extra)
        (o,) = sorted(out.glob("*.isyntax"))
        pairs.append((next(s.iterdir()), o))
    return pairs


def _verify(cli, path, *extra):
    code, stdout, _ = cli("verify", "--json", str(path), *extra)
    return code, {c["check"]: c for c in json.loads(stdout)[0]["checks"]}, stdout


def _split(data: bytes) -> tuple[bytes, bytes]:
    eot = data.index(b"\r\n\x04")
    return data[:eot], data[eot:]


def _plant(src, dst, edit) -> None:
    """Rewrite the header with ``edit`` and pad (or trim the padding) back to its length."""
    header, rest = _split(src.read_bytes())
    new = edit(header)
    stripped = new.rstrip(b"\n")
    pad = len(header) - len(stripped)
    assert pad >= 0, "planted text does not fit in the padding"
    dst.write_bytes(stripped + b"\n" * pad + rest)


def test_clean_outputs_pass_without_source(outs, cli):
    for i, (_src, o) in enumerate(outs):
        code, checks, stdout = _verify(cli, o)
        if i == 0:
            assert code == 0, [c for c in checks.values() if not c["ok"]]
        else:  # a kept macro is reported by the images checks (verify's default policy); the text is clean
            assert {c["check"] for c in checks.values() if not c["ok"]} <= {"residual-images", "isyntax-images"}
        voc = checks["vocabulary"]
        assert voc["ok"] and "not applicable" not in voc["detail"]
        assert "coded table(s)" in voc["detail"] and "opaque" in voc["detail"]
        found, _ = scan_isyntax(o)
        assert found == []


def test_raw_source_fails_vocabulary_without_its_values(outs):
    from tests.fixtures.isyntax_gen import CANARIES

    src, _ = outs[0]
    found, _ = scan_isyntax(src)
    assert len(found) >= 10
    text = json.dumps([f.as_dict() for f in found])
    for v in CANARIES.values():
        assert v not in text


@pytest.mark.parametrize(
    "where",
    ["attribute with free text", "identifying name, empty value", "object type", "padding", "comment"],
)
def test_planted_header_text_fails_without_source(outs, cli, tmp_path, where):
    _src, o = outs[0]
    dst = tmp_path / "WSI-planted.isyntax"
    root_open = b'<DataObject ObjectType="DPUfsImport">'

    def edit(h: bytes) -> bytes:
        if where == "attribute with free text":
            line = f'<Attribute Name="PIM_DP_SCANNER_NOTE" Group="0x301D" Element="0x10FF" PMSVR="IString">{PLANT}</Attribute>'
            return h.replace(root_open, root_open + b"\n" + line.encode(), 1)
        if where == "identifying name, empty value":
            line = '<Attribute Name="JANE_ROE_BIOPSY" Group="0x301D" Element="0x10FE" PMSVR="IString"></Attribute>'
            return h.replace(root_open, root_open + b"\n" + line.encode(), 1)
        if where == "object type":
            return h.replace(b'ObjectType="PixelDataRepresentation"', b'ObjectType="JaneRoeRepresentation"', 1)
        if where == "padding":  # a comment after the root, in the padding before CR LF EOT
            return h.rstrip(b"\n") + b"\n" + f"<!-- {PLANT} -->".encode() + b"\n"
        return h.replace(root_open, root_open + f"<!-- {PLANT} -->".encode(), 1)

    _plant(o, dst, edit)
    assert dst.stat().st_size == o.stat().st_size
    code, checks, stdout = _verify(cli, dst)
    assert code == 1
    assert not checks["vocabulary"]["ok"], checks["vocabulary"]
    assert "Jane" not in stdout and "Roe" not in stdout and "JANE" not in stdout


def test_raw_text_in_padding_is_refused_and_found(outs, cli, tmp_path):
    """Text in the padding that is not XML: the header does not parse, verify refuses the file (one
    line, no value) and the scan finds the text after the root's end."""
    _src, o = outs[0]
    dst = tmp_path / "WSI-padding.isyntax"
    _plant(o, dst, lambda h: h.rstrip(b"\n") + b"\n" + PLANT.encode() + b"\n")
    code, stdout, stderr = cli("verify", str(dst))
    assert code != 0 and "Jane" not in stdout + stderr
    header, _ = _split(dst.read_bytes())
    root_end = header.rindex(b"</DataObject>")
    found, _ = scan_isyntax(dst)
    assert any(f.offset > root_end and "vocabulary" in f.kind for f in found)
    assert any("not well-formed" in f.kind for f in found)


def test_planted_text_in_coded_table_fails(outs, tmp_path):
    _src, o = outs[0]
    dst = tmp_path / "WSI-table.isyntax"
    good = base64.b64encode(partial_block_header_table([(1, 1, 0, 0, 1, 0)]))
    # the same record with "Jane" spelt in its x coordinate: a number out of any image's range
    x = int.from_bytes(b"Jane", "little")
    bad = base64.b64encode(partial_block_header_table([(x, 1, 0, 0, 1, 0)]))
    assert len(good) == len(bad)
    _plant(o, dst, lambda h: h.replace(good, bad, 1) if good in h else pytest.fail("table not found"))
    found, _ = scan_isyntax(dst)
    assert [f.kind for f in found] and all("coded table" in f.kind for f in found)


def test_block_header_table_parser():
    ok = partial_block_header_table([(1, 1, 0, 0, 1, 0), (2, 1, 1, 0, 1, 0)])
    assert parse_block_header_table(ok, 1000) == 2
    # a full record (offset and size in the table): offsets bounded by the file size
    rec = (
        struct.pack("<HHI", 0xFFFE, 0xE000, 72)
        + struct.pack("<HHI", 0x301D, 0x200E, 20)
        + struct.pack("<5I", 1, 1, 0, 0, 1)
        + struct.pack("<HHIQ", 0x301D, 0x2010, 8, 500)
        + struct.pack("<HHIQ", 0x301D, 0x2011, 8, 64)
        + struct.pack("<HHII", 0x301D, 0x2012, 4, 0)
    )
    full = struct.pack("<I", len(rec)) + rec
    assert parse_block_header_table(full, 1000) == 1
    with pytest.raises(TableError):
        parse_block_header_table(full, 100)  # offset past the end of the file
    with pytest.raises(TableError):  # an unknown tag carrying bytes
        parse_block_header_table(ok + struct.pack("<HHI", 0x0010, 0x0010, 8) + b"JANE ROE", 1000)
    with pytest.raises(TableError):  # byte count does not match
        parse_block_header_table(ok[:-4], 1000)
    # many alike records (checked column-wise): one of them spelling text in a field is found
    recs = [(i % 97, i % 89, i % 3, i % 4, 1, 0) for i in range(5000)]
    assert parse_block_header_table(partial_block_header_table(recs), 1000) == 5000
    recs[4321] = (1, int.from_bytes(b"Roe ", "little"), 0, 0, 1, 0)
    with pytest.raises(TableError, match="out of range"):
        parse_block_header_table(partial_block_header_table(recs), 1000)


def test_body_is_opaque_without_source_and_proven_with_it(outs, cli, tmp_path):
    """What cannot be proven without the source: text inside the body's coded data."""
    src, o = outs[0]
    data = bytearray(o.read_bytes())
    eot = data.index(b"\r\n\x04") + 3
    pos = eot + 4096 + 100  # inside the coded data, past the seek table
    data[pos : pos + len(PLANT)] = PLANT.encode()
    dst = tmp_path / "WSI-body.isyntax"
    dst.write_bytes(bytes(data))
    code, checks, _ = _verify(cli, dst)
    assert code == 0 and checks["vocabulary"]["ok"]  # the limit: coded data is opaque without the source
    code, checks, stdout = _verify(cli, dst, "--source", str(src))
    assert code == 1 and not checks["body-identical"]["ok"]
    assert "Jane" not in stdout
