"""Red team, stop 38 (closed in stop 39): two free choices left in the Philips DPUfsImport XML
(the Philips TIFF ImageDescription and the iSyntax header) after its one-form rule.

* Attribute tags were free: the ``Group``, ``Element`` and ``PMSVR`` of a kept ``<Attribute>`` were
  copied from the source (4 hex digits each and a type name: an MRN written as Group/Element hex).
  Now every kept Attribute is of a Name in the shared table (``profiles/data/dpufs_attributes.json``)
  and carries exactly its Group, Element and PMSVR; one of another Name is taken out.
* Sibling order was free: the order of a DataObject's Attributes (14 Philips and 18 iSyntax at the
  top level, about 36 bits) was the source's.  Now they stand in (Group, Element) order, the items
  of an ``<Array>`` (pyramid levels, dimensions, scanned images) in theirs.

The verifier refuses an output with any other tag, PMSVR, Name or order; the redactor writes the
one form from a source with odd tags and order.
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .test_redteam15_xml import _edit_xml, _kinds, _redacted

TAG_KIND = "DPUfsImport Attribute whose Group, Element or PMSVR is not its Name's (values of the writer's choosing)"
NAME_KIND = "DPUfsImport Attribute of a Name outside the attribute table"
ORDER_KIND = "DPUfsImport sibling elements out of their one order (Group, Element): an order of the writer's choosing"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    """A Philips TIFF and an iSyntax output the redactor wrote (clean: their vocabulary checks pass)."""
    from wsianon.verify.isyntax_text import scan_isyntax
    from wsianon.verify.vocabulary import scan_tiff

    from .fixtures.isyntax_gen import make_isyntax
    from .fixtures.philips_gen import make_philips

    out = {
        "philips": _redacted(tmp_path_factory, "CASE-1.tiff", make_philips),
        "isyntax": _redacted(tmp_path_factory, "CASE-1.isyntax", make_isyntax),
    }
    assert scan_tiff(out["philips"], "philips") == []
    assert scan_isyntax(out["isyntax"])[0] == []
    return out


def _scan(path: Path) -> list[str]:
    from wsianon.verify.isyntax_text import scan_isyntax
    from wsianon.verify.vocabulary import scan_tiff

    return _kinds(scan_isyntax(path)[0] if path.suffix == ".isyntax" else scan_tiff(path, "philips"))


def _xml_of(path: Path) -> str:
    """The DPUfsImport XML of an output (the Philips TIFF ImageDescription, the iSyntax header)."""
    data = path.read_bytes()
    if path.suffix == ".isyntax":
        return data[: data.index(b"\r\n\x04")].decode().rstrip("\n")
    import tifffile

    with tifffile.TiffFile(path) as tf:
        return tf.pages.first.description


def _verify(path: Path) -> tuple[int, str]:
    from .conftest import run_subprocess

    p = run_subprocess("verify", str(path))
    return p.returncode, p.stdout + p.stderr


# -- gap 1: Group, Element and PMSVR are the Name's ---------------------------------------------

_SOURCE = b'Name="PIM_DP_SOURCE_FILE" Group="0x301D" Element="0x1000" PMSVR="IString"'
_SOURCE_RX = re.compile(rb'Name="PIM_DP_SOURCE_FILE" Group="[^"]*" Element="[^"]*" PMSVR="[^"]*"')


@pytest.mark.parametrize(
    "plant, kind",
    [
        # an MRN (4711 0815) written as the tag of a blanked attribute
        (b'Name="PIM_DP_SOURCE_FILE" Group="0x4711" Element="0x0815" PMSVR="IString"', TAG_KIND),
        (b'Name="PIM_DP_SOURCE_FILE" Group="0x301D" Element="0x1000" PMSVR="IDouble"', TAG_KIND),
        (b'Name="PIM_DP_SOURCE_FILE" Group="0x301D" Element="0x100a" PMSVR="IString"', TAG_KIND),  # a hex digit's case: a bit
        # a schema word the table lacks: no Group/Element/PMSVR to write but the writer's
        (b'Name="PIM_DP_SCANNER_NOTE" Group="0x301D" Element="0x1000" PMSVR="IString"', NAME_KIND),
    ],
)
@pytest.mark.parametrize("fmt", ["philips", "isyntax"])
def test_verifier_refuses_an_attribute_tag_other_than_its_names(outputs, tmp_path, fmt, plant, kind):
    def edit(x: bytes) -> bytes:
        x, n = _SOURCE_RX.subn(plant, x)  # (whatever tag the output gave it)
        assert n == 1
        return x

    planted = _edit_xml(outputs[fmt], tmp_path, edit)
    assert plant in planted.read_bytes()
    assert kind in _scan(planted)


def test_verify_refuses_a_tag_planted_into_an_output(outputs, tmp_path):
    """End to end: ``wsianon verify`` passes the clean outputs and refuses one whose blanked
    attribute's tag spells a number."""
    for fmt, out in outputs.items():
        code, log = _verify(out)
        assert code == 0, (fmt, log)

        def edit(x: bytes) -> bytes:
            return _SOURCE_RX.sub(_SOURCE.replace(b"0x301D", b"0x4711").replace(b"0x1000", b"0x0815"), x)

        code, log = _verify(_edit_xml(out, tmp_path, edit))
        assert code != 0, (fmt, log)
        assert "Group, Element or PMSVR" in log, log


def _source(tmp_path: Path, monkeypatch, fmt: str, edit, name: str = "CASE-1") -> Path:
    """A fixture slide of ``fmt`` whose generator's XML went through ``edit`` (str in, str out)."""
    (tmp_path / "src").mkdir(exist_ok=True)
    if fmt == "philips":
        from .fixtures import philips_gen as g

        orig = g.dpufs_xml
        monkeypatch.setattr(g, "dpufs_xml", lambda *a, **k: edit(orig(*a, **k)))
        src = tmp_path / "src" / f"{name}.tiff"
        g.make_philips(src)
    else:
        from .fixtures import isyntax_gen as i

        orig2 = i.header_xml
        monkeypatch.setattr(i, "header_xml", lambda *a, **k: edit(orig2(*a, **k)))
        src = tmp_path / "src" / f"{name}.isyntax"
        i.make_isyntax(src)
    return src


def _run(cli, src: Path, out: Path, key: Path) -> Path:
    import json

    code, stdout, stderr = cli("run", "--target", "native", "--key-file", str(key), str(src), "-o", str(out))
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert code == 0 and slide["status"] == "ok", stdout + stderr
    (f,) = [out / f for f in slide["outputs"]]
    return f


@pytest.fixture
def key(cli, tmp_path) -> Path:
    k = tmp_path / "key"
    assert cli("key", "init", str(k))[0] == 0
    return k


def _attributes(xml: str) -> list[ET.Element]:
    return list(ET.fromstring(xml[xml.index("<DataObject") :]).iter("Attribute"))


@pytest.mark.parametrize("fmt", ["philips", "isyntax"])
def test_odd_tags_in_the_source_are_written_as_the_tables(cli, tmp_path, monkeypatch, key, fmt):
    """The fixtures' own tags are odd (Philips: every attribute 0x301D,0x1001; iSyntax: the pixel
    data representations 0x1001,0x8003/0x8004, an unknown 0x301D,0x10FF); planted, a kept and a
    blanked attribute's tag spells 4711 0815 and its PMSVR is another type's."""

    def edit(x: str) -> str:
        x, n = re.subn(
            r'Name="(DICOM_MANUFACTURER|DICOM_DEVICE_SERIAL_NUMBER)" Group="0x[0-9A-F]{4}" Element="0x[0-9A-F]{4}" PMSVR="IString"',
            r'Name="\1" Group="0x4711" Element="0x0815" PMSVR="IUInt16"',
            x,
        )
        assert n == 2
        return x

    src = _source(tmp_path, monkeypatch, fmt, edit)
    assert b'Group="0x4711" Element="0x0815"' in src.read_bytes()
    out = _run(cli, src, tmp_path / "out", key)
    xml = _xml_of(out)
    assert "0x4711" not in xml and "0x0815" not in xml
    assert "PIM_DP_SCANNER_NOTE" not in xml  # the iSyntax fixture's name outside the table: taken out
    from wsianon.profiles import dpufs_table

    table = dpufs_table()
    attrs = _attributes(xml)
    assert attrs and all((a.get("Group"), a.get("Element"), a.get("PMSVR")) == table[a.get("Name") or ""] for a in attrs)
    # Philips TIFF binds no value to the tag (OpenSlide reads by Name): the manufacturer stays; an
    # iSyntax reader dispatches on the tag: a safe name on another tag is blanked
    maker = [a.text for a in attrs if a.get("Name") == "DICOM_MANUFACTURER"]
    assert maker == (["PHILIPS"] if fmt == "philips" else [None])
    assert _verify(out)[0] == 0


# -- gap 2: sibling order ---------------------------------------------------------------------------


def _swap_lines(x: bytes, a: bytes, b: bytes) -> bytes:
    """``x`` with the lines of the attributes Named ``a`` and ``b`` (one each) swapped."""
    la = re.search(rb"[^\n]*Name=\"" + a + rb"\"[^\n]*", x)
    lb = re.search(rb"[^\n]*Name=\"" + b + rb"\"[^\n]*", x)
    assert la and lb and la.start() < lb.start()
    return x[: la.start()] + lb.group(0) + x[la.end() : lb.start()] + la.group(0) + x[lb.end() :]


@pytest.mark.parametrize("fmt", ["philips", "isyntax"])
@pytest.mark.parametrize(
    "a, b",
    [
        (b"DICOM_MANUFACTURER", b"DICOM_MANUFACTURERS_MODEL_NAME"),  # top level, both with values
        (b"PIM_DP_SOURCE_FILE", b"PIM_DP_UFS_BARCODE"),  # top level, both blanked: one bit
    ],
)
def test_verifier_refuses_siblings_in_another_order(outputs, tmp_path, fmt, a, b):
    planted = _edit_xml(outputs[fmt], tmp_path, lambda x: _swap_lines(x, a, b))
    assert ORDER_KIND in _scan(planted)


def test_verify_refuses_a_swapped_output(outputs, tmp_path):
    for fmt, out in outputs.items():
        code, log = _verify(_edit_xml(out, tmp_path, lambda x: _swap_lines(x, b"DICOM_SOFTWARE_VERSIONS", b"PIIM_DP_SCANNER_RACK_NUMBER")))
        assert code != 0, (fmt, log)
        assert "one order" in log, log


def _reversed_siblings(x: str, reverse: bool = True) -> str:
    """``x`` (a declaration and a DPUfsImport document) with the children of every DataObject in
    reverse order (``reverse`` False: only parsed and written again, for the control)."""
    decl, body = x[: x.index("<DataObject")], x[x.index("<DataObject") :]
    root = ET.fromstring(body)
    if reverse:
        for obj in root.iter("DataObject"):
            obj[:] = list(obj)[::-1]
    ET.indent(root, space="\t")
    return decl.strip() + "\n" + ET.tostring(root, encoding="unicode")


@pytest.mark.parametrize("fmt", ["philips", "isyntax"])
def test_siblings_in_another_order_are_written_in_the_one_order(cli, tmp_path, monkeypatch, key, fmt):
    """A source whose DataObjects' children stand in reverse order gives the same XML as the same
    source in its own order; the items of every Array (levels, dimensions, scanned images) keep
    theirs, and the reader reads the pyramid."""
    outs = {}
    for rev in (False, True):
        t = tmp_path / f"r{int(rev)}"
        t.mkdir()
        with monkeypatch.context() as m:
            src = _source(t, m, fmt, lambda x, rev=rev: _reversed_siblings(x, rev))
        outs[rev] = _run(cli, src, t / "out", key)
    xml = _xml_of(outs[True])
    assert xml == _xml_of(outs[False])
    from wsianon.io.xmlform import dpufs_sibling_key

    root = ET.fromstring(xml[xml.index("<DataObject") :])
    for obj in root.iter("DataObject"):
        keys = [dpufs_sibling_key(k) for k in obj]
        assert keys == sorted(keys)
    top = [a.get("Name") for a in root]
    assert top.index("DICOM_MANUFACTURER") < top.index("PIM_DP_SCANNED_IMAGES")
    levels = [a.text for a in root.iter("Attribute") if a.get("Name") == "PIIM_PIXEL_DATA_REPRESENTATION_NUMBER"]
    assert levels == ["0", "1", "2"]  # the array's order, not the siblings'
    if fmt == "philips":
        import openslide

        with openslide.OpenSlide(str(outs[True])) as s:
            assert s.level_dimensions == ((1024, 768), (512, 384), (256, 192))
    else:
        dims = [a.text for a in root.iter("Attribute") if a.get("Name") == "UFS_IMAGE_DIMENSION_NAME"]
        assert dims == ["x", "y", "c", "s", "w"]
        # libisyntax (pyisyntax) in a child process: it can crash on a header it misreads
        probe = "import sys; from isyntax import ISyntax\nwith ISyntax.open(sys.argv[1]) as s: print(s.level_count, *s.dimensions, s.mpp_x)"
        r = subprocess.run([sys.executable, "-c", probe, str(outs[True])], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        n, w, h, mpp = r.stdout.split()
        assert (int(n), int(w), int(h)) == (3, 1024, 768)
        assert float(mpp) == pytest.approx(0.25)  # the image type read before the dimensions' scale factor
    assert _verify(outs[True])[0] == 0
