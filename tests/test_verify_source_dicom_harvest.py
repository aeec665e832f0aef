"""``verify --source`` of a DICOM output scans for the source's values as the verifier reads them
itself (``canaries.harvest``), as ``run`` does, not only for the values the redactor's reading
listed: a value that reading missed is still found (independence of the verifier)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.svs_gen import write_svs
from wsianon.converters.base import Inventory

PLANTED = "PRIVTAG-CANARY-55000"  # the SVS fixture's private tag: the verifier's own reading finds it


def _plant(dcm: Path, value: bytes) -> None:
    """``value`` over bytes near the end of the file (the last frame's coded data): a stand-in for a
    value the conversion carried over where no reading of the redactor looked."""
    data = bytearray(dcm.read_bytes())
    at = len(data) - 64 - len(value)
    data[at : at + len(value)] = value
    dcm.write_bytes(bytes(data))


def test_verify_source_of_a_dicom_output_finds_a_value_the_redactors_reading_missed(tmp_path, cli, monkeypatch):
    src = tmp_path / "src" / "CASE-7.svs"
    src.parent.mkdir()
    write_svs(src, levels=1, size=(768, 512))
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "dicom", str(src), "-o", str(out))
    assert code == 0, stdout + stderr
    volume = next(out.rglob("*volume.dcm"))
    assert PLANTED.encode() not in volume.read_bytes()
    _plant(volume, PLANTED.encode())
    # the redactor's reading of the source misses the value (as a reader with a gap would)
    real = Inventory.canaries
    monkeypatch.setattr(Inventory, "canaries", lambda self: [c for c in real(self) if c.value.strip() != PLANTED])
    code, stdout, _ = cli("verify", "--json", str(volume.parent), "--source", str(src))
    assert code != 0
    (slide,) = json.loads(stdout)
    scan = next(c for c in slide["checks"] if c["check"] == "canary-scan")
    assert not scan["ok"], scan
    assert any("independent" in f["field"] for f in slide["findings"]), slide["findings"]
    assert PLANTED not in stdout  # the report names the field, never the value
