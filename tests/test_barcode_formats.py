"""The barcode formats every search reads (``wsianon/io/barcodes.py``).

zxing-cpp reads DX Film Edge (the code along the edge of 35 mm film, on no slide label) in a 2 px
wide strip of a regular texture: the DICOM route's ``dicom: barcode pyramid`` found 18 such
"barcodes" in the benchmark slide's textured tiles reduced 2x and quarantined a slide with no
label. ``tests/data/dx-film-edge-texture.png`` is a 128 px crop of that level (the project's own
generated texture), which zxing-cpp reads as DX Film Edge when asked for every format.
"""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import BUNDLED

zxingcpp = pytest.importorskip("zxingcpp", reason="zxing-cpp is a dependency; without it nothing is searched")


def _texture() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(BUNDLED / "dx-film-edge-texture.png").convert("L"))


def test_the_texture_reads_as_dx_film_edge_when_every_format_is_asked():
    found = zxingcpp.read_barcodes(_texture())
    assert [str(r.format) for r in found] == ["DX Film Edge"]


def test_the_searches_do_not_read_it():
    from wsianon.io import barcodes
    from wsianon.verify.pyramid_barcodes import count_barcodes

    assert barcodes.read(_texture()) == []
    assert count_barcodes(np.repeat(_texture()[..., None], 3, axis=2)) == 0


@pytest.mark.parametrize(
    "name", ["Code128", "Code39", "Code93", "Codabar", "ITF", "EAN13", "UPCA", "DataBar", "DataMatrix", "QRCode", "MicroQRCode", "PDF417", "Aztec"]
)
def test_every_label_format_is_still_read(name):
    """The formats a slide label carries (Code 128 and Code 39 linear, Data Matrix and QR square,
    PDF417 stacked, and the retail and industrial ones) stay in the search."""
    from wsianon.io.barcodes import label_formats

    fmt = getattr(zxingcpp.BarcodeFormat, name)
    assert fmt in zxingcpp.barcode_formats_list(label_formats())


@pytest.mark.parametrize("kind", ["Code128", "DataMatrix", "QRCode"])
def test_a_label_barcode_is_found(kind):
    """A written barcode of each common label format is read through the filtered search."""
    from wsianon.io import barcodes

    fmt = getattr(zxingcpp.BarcodeFormat, kind)
    img = np.asarray(zxingcpp.write_barcode_to_image(zxingcpp.create_barcode("S24-13579", fmt), scale=4))
    found = barcodes.read(np.ascontiguousarray(img))
    assert [r.text for r in found] == ["S24-13579"]


def test_a_search_that_fails_fails_closed(cli, tmp_path, monkeypatch):
    """zxing-cpp raising while a kept associated image is searched: ``barcode-thumbnail`` fails
    (it counted 0 barcodes and passed), as ``barcode-pyramid`` does."""
    import json

    from wsianon.io import barcodes

    from .fixtures.helpers import run_keyed
    from .fixtures.svs_gen import write_svs

    (tmp_path / "src").mkdir()
    src = write_svs(tmp_path / "src" / "CASE-1305.svs", size=(1024, 768), levels=2).path
    code, text, out = run_keyed(cli, tmp_path, src)
    assert code == 0, text[-800:]
    (slide,) = out.glob("*.svs")

    def broken(*_a, **_k):
        raise RuntimeError("zxing-cpp failed")

    monkeypatch.setattr(barcodes, "read", broken)
    code, stdout, _err = cli("verify", "--json", str(slide))
    checks = {c["check"]: (c["ok"], c["detail"]) for c in json.loads(stdout)[0]["checks"]}
    assert code != 0
    assert checks["barcode-thumbnail"] == (False, "the barcode search of associated image 'thumbnail' failed")
    assert checks["barcode-pyramid"][0] is False and "failed" in checks["barcode-pyramid"][1]
