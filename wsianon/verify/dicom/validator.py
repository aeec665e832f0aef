"""``dicom: dciodvfy``: the external IOD validator (dicom3tools), started early and read late."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from wsianon.verify.dicom.common import Checks

# ---------------------------------------------------------------------------
# dciodvfy


class Dciodvfy:
    """dciodvfy started in the background (it runs while the frames are compared)."""

    def __init__(self, path: Path):
        exe = shutil.which("dciodvfy")
        self.proc = None
        if exe is not None:
            try:
                self.proc = subprocess.Popen([exe, "-new", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            except OSError:
                self.proc = None

    def errors(self) -> list[str]:
        if self.proc is None:
            return ["dciodvfy could not run"]
        try:
            out, _ = self.proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return ["dciodvfy timed out"]
        return _parse_dciodvfy(out)


def _dciodvfy_errors(path: Path) -> list[str] | None:
    if shutil.which("dciodvfy") is None:
        return None
    return Dciodvfy(path).errors()


def _parse_dciodvfy(out: bytes) -> list[str]:
    text = out.decode("latin-1", "replace")
    errs = []
    for line in text.splitlines():
        if line.startswith("Error"):
            # values appear in <...>: drop them so nothing identifying reaches a report; the
            # attribute or element a message is about (also in <...>) is a name, kept
            line = re.sub(r"(?<!attribute )(?<!Attribute )(?<!element )(?<!Element )<[^>]*>", "<>", line)
            line = re.sub(r"\[\d+\]", "", line)
            errs.append(line.strip())
    return errs


def check_dciodvfy(outputs: list[Path], sources: list[Path] | None, verdict: Checks, started: dict | None = None, accept_unrun: bool = False) -> None:
    if shutil.which("dciodvfy") is None:  # not run: fails the slide unless --accept-unrun-checks
        verdict.add(
            "dicom: dciodvfy",
            accept_unrun,
            "not run: dciodvfy (dicom3tools) is not installed "
            + ("(accepted by --accept-unrun-checks)" if accept_unrun else "(install dicom3tools, or pass --accept-unrun-checks)"),
            not_run=True,
        )
        return
    baseline: set[str] | None = None
    if sources:
        baseline = set()
        for s in sources:
            baseline |= set(_dciodvfy_errors(s) or [])
    bad: list[str] = []
    for f in outputs:
        errs = (started[f].errors() if started and f in started else _dciodvfy_errors(f)) or []
        new = [e for e in errs if baseline is None or e not in baseline]
        if new:
            first = new[0].split(" - ")[1] if " - " in new[0] else new[0]
            bad.append(f"{f.name}: {len(new)} error(s), e.g. {first[:120]}")
    if bad:
        verdict.add("dicom: dciodvfy", False, "; ".join(bad[:5]))
    else:
        what = "no errors" if baseline is None else "no errors beyond the source's own"
        verdict.add("dicom: dciodvfy", True, f"{len(outputs)} instances: {what}")
