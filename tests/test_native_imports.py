"""The native route does not import the DICOM stack.

``import pydicom`` costs ~0.19 s here (measured with numpy already loaded), paid by every native
run before its first byte was copied: the preflight imported a message constant from
``wsianon.io.dicomframes`` at module level, which imports pydicom. The preflight now imports it
where a DICOM instance is refused. This test runs a whole native job in a fresh interpreter and
looks at what it imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

from .fixtures.helpers import TEST_KEY, plain_svs

PROBE = """
import runpy, sys
sys.argv = ["wsianon", *sys.argv[1:]]
try:
    runpy.run_module("wsianon.cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in ("pydicom", "wsidicom", "wsidicomizer", "highdicom") if m in sys.modules)
print("IMPORTED", ",".join(heavy), "EXIT", code)
"""


def test_a_native_run_imports_no_dicom_library(tmp_path):
    src = plain_svs(tmp_path)
    key = tmp_path / "key"
    key.write_text(TEST_KEY)
    key.chmod(0o600)
    out = tmp_path / "out"
    p = subprocess.run(
        [sys.executable, "-c", PROBE, "run", "--target", "native", str(src), "-o", str(out), "--key-file", str(key)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("IMPORTED")), None)
    assert line is not None, p.stdout[-2000:] + p.stderr[-2000:]
    assert line == "IMPORTED  EXIT 0", line
    report = json.loads((out / "wsianon-report.json").read_text())
    assert [s["status"] for s in report["slides"]] == ["ok"]
    assert len(list(out.glob("*.svs"))) == 1
