"""Red team, stop 38: vendor XML that a parser reads the same way but that carries text elsewhere.

* A processing instruction in place of the XML declaration (``<?xml-x 98765432 19790101 S19-4711?>``)
  was taken for the declaration and copied into the Philips, Leica and Ventana outputs (numbers
  pass as structure): now only a real declaration is kept (else the canonical one is written), and
  the verifier requires the prolog of an XML text value (and of the iSyntax header) to be one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

PAYLOAD = "98765432 19790101 S19-4711"
PI = f"<?xml-x {PAYLOAD}?>"


def _run(cli, src: Path, out: Path) -> tuple[int, dict, str]:
    code, stdout, stderr = cli("run", "--target", "native", str(src), "-o", str(out))
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    return code, slide, stdout + stderr


def _outputs(out: Path, slide: dict) -> list[Path]:
    return [out / f for f in slide["outputs"]]


def _swap_declaration(x):
    """``x`` (str or bytes) with its XML declaration replaced by the processing instruction."""
    s = x.decode() if isinstance(x, bytes) else x
    for d in ('<?xml version="1.0" encoding="UTF-8" ?>', '<?xml version="1.0" encoding="utf-8"?>'):
        if s.startswith(d):
            s = PI + s[len(d) :]
            break
    else:
        raise AssertionError("no declaration")
    return s.encode() if isinstance(x, bytes) else s


def _shared_without(cli, src: Path, out: Path, *needles: bytes) -> None:
    """``run`` shares ``src`` (status ok) and no output file holds any of ``needles``."""
    code, slide, log = _run(cli, src, out)
    assert code == 0 and slide["status"] == "ok", log
    for f in _outputs(out, slide):
        data = f.read_bytes()
        assert not any(n in data for n in needles), f


def _source_with_xml_edit(tmp_path: Path, monkeypatch, fmt: str, edit) -> Path:
    """A fixture slide of ``fmt`` (philips, leica, ventana) whose generator's XML went through
    ``edit`` (str or bytes in, the same out) before it was written."""
    (tmp_path / "src").mkdir()
    if fmt == "philips":
        from .fixtures import philips_gen as g

        orig = g.dpufs_xml
        monkeypatch.setattr(g, "dpufs_xml", lambda *a, **k: edit(orig(*a, **k)))
        src = tmp_path / "src" / "CASE-1.tiff"
        g.make_philips(src)
    elif fmt == "leica":
        from .fixtures import scn_gen as g

        orig = g.scn_xml
        monkeypatch.setattr(g, "scn_xml", lambda *a, **k: edit(orig(*a, **k)))
        src = tmp_path / "src" / "CASE-1.scn"
        g.make_scn(src)
    else:
        from .fixtures import bif_gen as g

        orig, orig2 = g.iscan_xmp, g.encode_info_xmp
        monkeypatch.setattr(g, "iscan_xmp", lambda *a, **k: edit(orig(*a, **k)))
        monkeypatch.setattr(g, "encode_info_xmp", lambda *a, **k: edit(orig2(*a, **k)))
        src = tmp_path / "src" / "CASE-1.bif"
        g.make_bif(src)
    return src


@pytest.mark.parametrize("fmt", ["philips", "leica", "ventana"])
def test_a_processing_instruction_for_a_declaration_is_not_copied(cli, tmp_path, monkeypatch, fmt):
    src = _source_with_xml_edit(tmp_path, monkeypatch, fmt, _swap_declaration)
    assert PI.encode() in src.read_bytes()
    _shared_without(cli, src, tmp_path / "out", b"<?xml-x", b"98765432", b"S19-4711")


def _redacted(tmp_path_factory, name: str, make) -> Path:
    """The output ``wsianon run --target native`` writes for the fixture ``make`` builds."""
    from .conftest import run_subprocess

    d = tmp_path_factory.mktemp(f"rt15_{name}")
    (d / "src").mkdir()
    src = d / "src" / name
    make(src)
    key = d / "key"
    assert run_subprocess("key", "init", str(key)).returncode == 0
    p = run_subprocess("run", "--target", "native", "--key-file", str(key), str(src), "-o", str(d / "out"))
    assert p.returncode == 0, p.stdout + p.stderr
    (out,) = [f for f in (d / "out").iterdir() if f.name.startswith("WSI-")]
    return out


@pytest.fixture(scope="module")
def philips_output(tmp_path_factory) -> Path:
    """A Philips TIFF output the redactor wrote (clean: its vocabulary check passes)."""
    from wsianon.verify.vocabulary import scan_tiff

    from .fixtures.philips_gen import make_philips

    out = _redacted(tmp_path_factory, "CASE-1.tiff", make_philips)
    assert scan_tiff(out, "philips") == []
    return out


@pytest.fixture(scope="module")
def isyntax_output(tmp_path_factory) -> Path:
    """An iSyntax output the redactor wrote (clean: its vocabulary check passes)."""
    from wsianon.verify.isyntax_text import scan_isyntax

    from .fixtures.isyntax_gen import make_isyntax

    out = _redacted(tmp_path_factory, "CASE-1.isyntax", make_isyntax)
    assert scan_isyntax(out)[0] == []
    return out


def _edit_xml(output: Path, tmp_path: Path, edit) -> Path:
    """A copy of ``output`` whose XML (a Philips TIFF's ImageDescription, an iSyntax header) is
    ``edit(xml)``, written in place over the XML and the padding after it (NULs, newlines)."""
    data = bytearray(output.read_bytes())
    start = data.index(b"<?xml")
    if output.suffix == ".isyntax":
        end = data.index(b"\r\n\x04")
        xml = bytes(data[start:end]).rstrip(b"\n")
        fill = b"\n"
    else:
        import tifffile

        with tifffile.TiffFile(output) as tf:
            tag = tf.pages.first.tags["ImageDescription"]
            start, end = tag.valueoffset, tag.valueoffset + tag.count - 1  # the last NUL stays
        # room for what is planted: the keyed UIDs written shorter (still of their form), three
        # blanked attributes left out
        xml = re.sub(rb"2\.25\.[0-9]+", b"2.25.1", bytes(data[start:end]).rstrip(b"\0"))
        xml = re.sub(rb"<Attribute [^>]*/>\s*", b"", xml, count=3)
        fill = b"\0"
    new = edit(xml)
    assert len(new) <= end - start, "no room for the edited XML"
    data[start:end] = new + fill * (end - start - len(new))
    planted = tmp_path / output.name
    planted.write_bytes(bytes(data))
    return planted


def _kinds(findings) -> list[str]:
    return [f.kind for f in findings]


def test_verifier_refuses_a_processing_instruction_prolog(philips_output, isyntax_output, tmp_path):
    from wsianon.verify.isyntax_text import scan_isyntax
    from wsianon.verify.vocabulary import scan_tiff

    def swap(x: bytes) -> bytes:
        assert x.startswith(b"<?xml version=")
        return PI.encode() + x[x.index(b"?>") + 2 :]

    assert "XML prolog other than an XML declaration" in _kinds(scan_tiff(_edit_xml(philips_output, tmp_path, swap), "philips"))
    assert "XML prolog other than an XML declaration" in _kinds(scan_isyntax(_edit_xml(isyntax_output, tmp_path, swap))[0])
    # after a real declaration, or inside the document, as well
    for where in (b"<DataObject", b"</DataObject>"):

        def plant(x: bytes, where=where) -> bytes:
            return x.replace(where, b"<?x " + PAYLOAD.encode() + b"?>" + where, 1)

        kinds = _kinds(scan_tiff(_edit_xml(philips_output, tmp_path, plant), "philips"))
        kinds += _kinds(scan_isyntax(_edit_xml(isyntax_output, tmp_path, plant))[0])
        if where == b"<DataObject":  # before the root: the prolog
            assert kinds.count("XML prolog other than an XML declaration") == 2
        else:
            assert "processing instruction, comment or DOCTYPE in XML" in kinds
            assert "processing instruction, comment or DOCTYPE in the XML header" in kinds


# -- text in a container without children ---------------------------------------------------------

_SCANNED = '<Attribute Name="PIM_DP_SCANNED_IMAGES" Group="0x301D" Element="0x1003" PMSVR="IDataObjectArray">'


@pytest.mark.parametrize(
    "fmt, piece",
    [
        ("philips", f"{_SCANNED}<Array>{PAYLOAD}</Array></Attribute>"),
        ("philips", f'<DataObject ObjectType="DPScannedImage">{PAYLOAD}</DataObject>'),
        ("isyntax", f"{_SCANNED}<Array>{PAYLOAD}</Array></Attribute>"),
        ("isyntax", f"{_SCANNED}{PAYLOAD}</Attribute>"),
    ],
)
def test_text_in_a_container_without_children_is_removed(cli, tmp_path, monkeypatch, fmt, piece):
    """``<Array>S19-4711 98765432</Array>``: the text of a container without children was kept
    (only containers with children had theirs cleared, and only <Attribute> leaves were judged)."""
    (tmp_path / "src").mkdir()
    if fmt == "philips":
        from .fixtures import philips_gen as g

        orig = g.dpufs_xml
        monkeypatch.setattr(g, "dpufs_xml", lambda *a, **k: orig(*a, **k).replace(_SCANNED, piece + _SCANNED, 1))
        src = tmp_path / "src" / "CASE-1.tiff"
        g.make_philips(src)
    else:
        from .fixtures import isyntax_gen as g

        iorig = g.header_xml
        monkeypatch.setattr(g, "header_xml", lambda *a, **k: iorig(*a, **k).replace(_SCANNED, piece + _SCANNED, 1))
        src = tmp_path / "src" / "CASE-1.isyntax"
        g.make_isyntax(src)
    assert PAYLOAD.encode() in src.read_bytes()
    _shared_without(cli, src, tmp_path / "out", b"98765432", b"S19-4711")


def test_verifier_refuses_text_in_a_container(philips_output, isyntax_output, tmp_path):
    from wsianon.verify.isyntax_text import scan_isyntax
    from wsianon.verify.vocabulary import scan_tiff

    for out, scan in ((philips_output, lambda p: scan_tiff(p, "philips")), (isyntax_output, lambda p: scan_isyntax(p)[0])):
        for plant in (
            lambda x: x.replace(b"<Array>", b"<Array>" + PAYLOAD.encode(), 1),  # beside children
            lambda x: x.replace(b"</DataObject>", f"{_SCANNED}<Array>{PAYLOAD}</Array></Attribute></DataObject>".encode(), 1),
            lambda x: x.replace(b"</DataObject>", f"{_SCANNED}{PAYLOAD}</Attribute></DataObject>".encode(), 1),
        ):
            assert "text inside a DPUfsImport container" in _kinds(scan(_edit_xml(out, tmp_path, plant)))


# -- bits in the whitespace between elements --------------------------------------------------------

SECRET = b"Doe^Jane 98765432"
_GAP = re.compile(r">([ \t\r\n]+)<")


def _bits_in_gaps(xml: str, after: str) -> str:
    """``xml`` with the whitespace between elements after ``after`` rewritten as bits of SECRET
    (space = 0, tab = 1; line breaks kept)."""
    bits = iter("".join(f"{b:08b}" for b in SECRET))
    start = xml.index(after)

    def gap(m: re.Match) -> str:
        return ">" + "".join(("\t" if next(bits, "0") == "1" else " ") if c in " \t" else c for c in m.group(1)) + "<"

    return xml[:start] + _GAP.sub(gap, xml[start:])


def _inter_element_whitespace(xml: str) -> set[str]:
    return {m.group(1) for m in _GAP.finditer(xml)}


@pytest.mark.parametrize("fmt", ["philips", "isyntax"])
def test_whitespace_between_elements_is_written_in_one_form(cli, tmp_path, monkeypatch, fmt):
    """Space = 0, tab = 1 between the kept elements carried a name through ``run`` and ``verify``."""
    (tmp_path / "src").mkdir()
    after = "PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE"
    if fmt == "philips":
        from .fixtures import philips_gen as g

        orig = g.dpufs_xml

        def spaced(*a, **k):  # the fixture writes no whitespace: one space or tab in every gap
            x = orig(*a, **k)
            i = x.index(after)
            return _bits_in_gaps(x[:i] + x[i:].replace("><", "> <"), after)

        monkeypatch.setattr(g, "dpufs_xml", spaced)
        src = tmp_path / "src" / "CASE-1.tiff"
        g.make_philips(src)
    else:
        from .fixtures import isyntax_gen as g

        iorig = g.header_xml
        monkeypatch.setattr(g, "header_xml", lambda *a, **k: _bits_in_gaps(iorig(*a, **k), after))
        src = tmp_path / "src" / "CASE-1.isyntax"
        g.make_isyntax(src)
    assert any(" " in w for w in _inter_element_whitespace(src.read_bytes().decode("latin-1")))
    out = tmp_path / "out"
    code, slide, log = _run(cli, src, out)
    assert code == 0 and slide["status"] == "ok", log
    (output,) = _outputs(out, slide)
    data = output.read_bytes().decode("latin-1")
    xml = data[data.index("<?xml") : data.index("</DataObject>\0" if fmt == "philips" else "\r\n\x04")]
    gaps = _inter_element_whitespace(xml.rstrip("\n"))
    assert gaps and all(re.fullmatch("\n\t*", w) for w in gaps), gaps


def test_verifier_refuses_whitespace_of_the_writers_choosing(philips_output, isyntax_output, tmp_path):
    from wsianon.verify.isyntax_text import scan_isyntax
    from wsianon.verify.vocabulary import scan_tiff

    form = "DPUfsImport XML not in its one form"
    for out, scan in ((philips_output, lambda p: scan_tiff(p, "philips")), (isyntax_output, lambda p: scan_isyntax(p)[0])):
        for plant in (
            lambda x: x.replace(b"\n\t<", b"\n <", 1),  # a space for a tab
            lambda x: x.replace(b"\n\t\t<", b"\n\t \t<", 1),  # one more
            lambda x: x.replace(b"<Attribute ", b"<Attribute  ", 1),  # spacing inside a tag
            lambda x: re.sub(rb'Group="([^"]*)" Element="([^"]*)"', rb'Element="\2" Group="\1"', x, count=1),  # attribute order
            lambda x: x.replace(b">PHILIPS<", b"> PHILIPS<", 1).replace(b">WSI<", b">WSI\t<", 1),  # a value's ends
        ):
            planted = _edit_xml(out, tmp_path, plant)
            assert planted.read_bytes() != out.read_bytes()
            assert any(k.startswith(form) for k in _kinds(scan(planted))), out.suffix
    # the iSyntax padding after the document: newlines only
    planted = _edit_xml(isyntax_output, tmp_path, lambda x: x + b"\n\t \t\n")
    assert any(k.startswith(form) for k in _kinds(scan_isyntax(planted)[0]))


# -- the iSyntax block header table ------------------------------------------------------------------


def _records(blocks) -> bytes:
    """Records of a partial block header table (the fixture's layout), without the byte count."""
    from .fixtures import isyntax_gen as g

    return g.partial_block_header_table(blocks)[4:]


def _pyramid_blocks(width=1024, height=768, levels=3, block=128) -> list[tuple[int, int, int, int, int, int]]:
    """Every codeblock of the fixture's pyramid where libisyntax places it (H blocks at every scale,
    LL at the top), colours 0-2, template 0."""
    pad = (3 << levels) - 3
    wip, hip = width + 2 * pad, height + 2 * pad
    gw = ((wip + (block << levels) - 1) // (block << levels)) << (levels - 1)
    gh = ((hip + (block << levels) - 1) // (block << levels)) << (levels - 1)
    out = []
    for s in range(levels):
        for coef in (1, 0) if s == levels - 1 else (1,):
            first = (3 << s) - 2 + (0 if coef else 1 << s)
            for by in range(gh >> s):
                for bx in range(gw >> s):
                    for c in range(3):
                        out.append((first + bx * ((2 * block) << s), first + by * ((2 * block) << s), c, s, coef, 0))
    return out


def _text_records(secret: bytes) -> list[tuple[int, int, int, int, int, int]]:
    """The red team's records: 3 bytes of text in the coefficient, 2 in the template id."""
    s = secret + b" " * (-len(secret) % 5)
    return [(1, 1, 0, 0, int.from_bytes(s[i : i + 3], "little"), int.from_bytes(s[i + 3 : i + 5], "little")) for i in range(0, len(s), 5)]


def _table_of(path: Path) -> bytes:
    import base64

    m = re.search(rb'Name="UFS_IMAGE_BLOCK_HEADER_TABLE"[^>]*>([^<]*)<', path.read_bytes())
    assert m
    return base64.b64decode(m.group(1).strip())


def test_block_header_table_records_outside_the_pyramid_are_dropped(cli, tmp_path, monkeypatch):
    """A name in the coefficient (bounded by 2^24) and template id (2^16) fields of extra records
    was kept, libisyntax still opening the file."""
    from .fixtures import isyntax_gen as g

    orig = g.partial_block_header_table
    monkeypatch.setattr(g, "partial_block_header_table", lambda blocks: orig(list(blocks) + _text_records(SECRET) + [tuple(blocks[0])]))
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "CASE-1.isyntax"
    g.make_isyntax(src)
    assert len(_table_of(src)) == 4 + 48 * 6
    out = tmp_path / "out"
    code, slide, log = _run(cli, src, out)
    assert code == 0 and slide["status"] == "ok", log
    (output,) = _outputs(out, slide)
    table = _table_of(output)
    assert table == orig([(1, 1, 0, 0, 1, 0)])  # the one codeblock, once
    assert any(r["name"] == "UFS_IMAGE_BLOCK_HEADER_TABLE: 5 items not in the pyramid" for r in slide["removed"]), slide["removed"]


def test_verifier_bounds_every_block_record_field(isyntax_output, tmp_path, monkeypatch):
    import base64
    import struct

    from wsianon.verify.isyntax_text import scan_isyntax

    from .fixtures import isyntax_gen as g

    table = base64.b64encode(_table_of(isyntax_output))

    def with_records(recs: bytes):
        new = base64.b64encode(struct.pack("<I", len(recs)) + recs)
        return lambda x: x.replace(table, new, 1)

    one = (1, 1, 0, 0, 1, 0)
    for extra in (
        _text_records(SECRET),
        [(1, 1, 0, 0, 1, 0)],  # the same codeblock twice
        [(1, 1, 3, 0, 1, 0)],  # colour
        [(1, 1, 0, 3, 1, 0)],  # scale (3 levels)
        [(1, 1, 0, 0, 2, 0)],  # coefficient
        [(1, 1, 0, 0, 0, 0)],  # LL below the top scale
        [(1, 1, 0, 0, 1, 1)],  # template id (1 template)
        [(2, 1, 0, 0, 1, 0)],  # x between two tiles
        [(1 + 256 * 8, 1, 0, 0, 1, 0)],  # x past the grid (8 tiles across)
        [(1, 1 + 256 * 4, 0, 0, 1, 0)],  # y past the grid (4 tiles down)
    ):
        planted = _edit_xml(isyntax_output, tmp_path, with_records(_records([one] + extra)))
        kinds = _kinds(scan_isyntax(planted)[0])
        assert any("no codeblock of the pyramid" in k for k in kinds), extra
    # every codeblock of the pyramid, each once: nothing to find
    full = g.partial_block_header_table(_pyramid_blocks())
    planted = _edit_xml(isyntax_output, tmp_path, with_records(full[4:]))
    assert scan_isyntax(planted)[0] == []


# -- the scanner's ICC profile in the DPUfsImport XML -------------------------------------------------


def _srgb_icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("fmt", ["philips", "isyntax"])
def test_the_icc_profile_is_rebuilt_and_kept(cli, tmp_path, monkeypatch, fmt):
    """``DICOM_ICCPROFILE`` (base64, in ``DP_COLOR_MANAGEMENT`` as real files have it): an iSyntax
    file was refused by the vocabulary check (base64 that is no JPEG), a Philips TIFF lost it
    (blanked).  Now it is rebuilt closed world (io.icc.sanitize) and kept; the verifier judges it
    as a profile."""
    import base64

    from wsianon.io import icc

    profile = _srgb_icc()
    assert icc.closed_problems(profile, exact=True) != 0  # it has texts (description, copyright)
    b64 = base64.b64encode(profile).decode()
    head = '<Attribute Name="DICOM_ICCPROFILE" Group="0x0028" Element="0x2000" PMSVR="IString">'
    cm = f'<Attribute Name="DP_COLOR_MANAGEMENT" Group="0x301D" Element="0x1013" PMSVR="IDataObjectArray"><Array><DataObject ObjectType="DPColorManagement">{head}{b64}</Attribute></DataObject></Array></Attribute>'
    anchor = '<Attribute Name="PIM_DP_IMAGE_TYPE"'
    (tmp_path / "src").mkdir()
    if fmt == "philips":
        from .fixtures import philips_gen as g

        orig = g.dpufs_xml

        def with_icc(*a, **k):
            x = orig(*a, **k)
            i = x.index('<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE"')
            return x[:i] + head + b64 + "</Attribute>" + x[i:]

        monkeypatch.setattr(g, "dpufs_xml", with_icc)
        src = tmp_path / "src" / "CASE-1.tiff"
        g.make_philips(src)
    else:
        from .fixtures import isyntax_gen as g

        iorig = g.header_xml

        def with_cm(*a, **k):
            x = iorig(*a, **k)
            i = x.rindex(anchor)  # the WSI's
            return x[:i] + cm + x[i:]

        monkeypatch.setattr(g, "header_xml", with_cm)
        src = tmp_path / "src" / "CASE-1.isyntax"
        g.make_isyntax(src)
    out = tmp_path / "out"
    code, slide, log = _run(cli, src, out)
    assert code == 0 and slide["status"] == "ok", log
    (output,) = _outputs(out, slide)
    m = re.search(rb'Name="DICOM_ICCPROFILE"[^>]*>([^<]+)<', output.read_bytes())
    assert m, "the profile is kept"
    kept = base64.b64decode(m.group(1))
    assert kept != profile and kept[36:40] == b"acsp" and icc.closed_problems(kept, exact=True) == 0


def test_verifier_refuses_an_icc_profile_with_text(isyntax_output, tmp_path):
    """Only a profile in its closed-world form passes as base64: one with its texts is judged."""
    import base64

    from wsianon.io import icc
    from wsianon.verify.isyntax_text import scan_isyntax

    raw = _srgb_icc()
    head = b'<Attribute Name="DICOM_ICCPROFILE" Group="0x0028" Element="0x2000" PMSVR="IString">'
    for profile, found in ((raw, True), (icc.sanitize(raw, compact=True)[0], False)):
        value = head + base64.b64encode(profile) + b"</Attribute>"

        def plant(x: bytes, value=value) -> bytes:
            i = x.index(b"\n\t<Attribute ")
            return x[:i] + b"\n\t" + value + x[i:]

        kinds = _kinds(scan_isyntax(_edit_xml(isyntax_output, tmp_path, plant))[0])
        assert ("text outside the iSyntax vocabulary" in kinds) is found, kinds


# -- Leica SCN and Ventana XMP: the same rule, in Canonical XML ---------------------------------------


def _xml_values(path: Path) -> list[str]:
    import tifffile

    out = []
    with tifffile.TiffFile(path) as tf:
        for page in tf.pages:
            for t in (270, 700):
                if t in page.tags:
                    v = page.tags[t].value
                    v = v.decode("utf-8") if isinstance(v, bytes) else v
                    if v.lstrip().startswith("<"):
                        out.append(v.rstrip("\0"))
    return out


@pytest.mark.parametrize("fmt", ["leica", "ventana"])
def test_leica_and_ventana_xml_is_written_in_one_form(cli, tmp_path, monkeypatch, fmt):
    """The whitespace between elements (and the attribute order) of the source's XML was copied."""

    def spaced(x):
        s = x.decode() if isinstance(x, bytes) else x
        s = s.replace("><", "> \t \t<")
        return s.encode() if isinstance(x, bytes) else s

    src = _source_with_xml_edit(tmp_path, monkeypatch, fmt, spaced)
    assert any("> \t \t<" in v for v in _xml_values(src))
    out = tmp_path / "out"
    code, slide, log = _run(cli, src, out)
    assert code == 0 and slide["status"] == "ok", log
    (output,) = [f for f in _outputs(out, slide) if f.suffix in (".scn", ".bif")]
    values = _xml_values(output)
    assert values and not any(re.search(r">\s+<", v) for v in values)


@pytest.mark.parametrize("fmt", ["leica", "ventana"])
def test_verifier_refuses_leica_and_ventana_xml_in_another_form(cli, tmp_path, fmt):
    import tifffile

    from wsianon.verify.vocabulary import scan_tiff

    (tmp_path / "src").mkdir()
    if fmt == "leica":
        from .fixtures.scn_gen import make_scn

        src = tmp_path / "src" / "CASE-1.scn"
        make_scn(src)
        tag = 270
    else:
        from .fixtures.bif_gen import make_bif

        src = tmp_path / "src" / "CASE-1.bif"
        make_bif(src)
        tag = 700
    code, slide, log = _run(cli, src, tmp_path / "out")
    assert code == 0, log
    (output,) = [f for f in _outputs(tmp_path / "out", slide) if f.suffix in (".scn", ".bif")]
    assert scan_tiff(output, fmt) == []
    with tifffile.TiffFile(output) as tf:
        t = tf.pages.first.tags[tag]
        start, count = t.valueoffset, t.count
    data = output.read_bytes()
    xml = data[start : start + count]
    decl = re.match(rb'<\?xml version="1\.0" encoding="(?:utf|UTF)-8"\?>', xml)
    assert decl

    def whitespace(x: bytes) -> bytes:  # the same length: a shorter declaration, a gap
        short = b'<?xml version="1.0"?>'
        gap = b" \t" * ((len(decl.group(0)) - len(short)) // 2)
        gap += b" " * (len(decl.group(0)) - len(short) - len(gap))
        return short + x[len(decl.group(0)) :].replace(b"><", b">" + gap + b"<", 1)

    def order(x: bytes) -> bytes:  # two XML attributes of an element swapped
        return re.sub(rb'<(\w+) (\w+="[^"]*") (\w+="[^"]*")', rb"<\1 \3 \2", x, count=1)

    for plant in (whitespace, order):
        new = plant(xml)
        assert len(new) == len(xml) and new != xml
        planted = tmp_path / f"planted{output.suffix}"
        planted.write_bytes(data[:start] + new + data[start + count :])
        assert any(k.startswith("XML not in its one form") for k in _kinds(scan_tiff(planted, fmt))), plant.__name__
