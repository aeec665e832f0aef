"""Typed results of the pipeline stages (no identifying values inside)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from wsianon.io.plan import Removal
from wsianon.io.scan import Finding
from wsianon.verify.reportnames import safe_removal

if TYPE_CHECKING:
    from wsianon.pipeline.anonymize import Placement


class Status(StrEnum):
    """What happened to one slide in this run (``Outcome.status``)."""

    PENDING = "pending"
    OK = "ok"  # verified clean and placed
    FAILED = "failed"  # verification failed: quarantined
    ERROR = "error"  # could not be processed (one-line reason)
    DRY_RUN = "dry-run"
    SKIPPED = "skipped"  # not a slide, or left out on purpose


class State(StrEnum):
    """A slide's state in the job manifest and in the record (cumulative over runs)."""

    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    QUARANTINED = "quarantined"
    SKIPPED = "skipped"
    ERROR = "error"


# an outcome's status -> the slide's state in the manifest
STATE_OF_STATUS: dict[str, State] = {Status.OK: State.OK, Status.FAILED: State.QUARANTINED, Status.ERROR: State.ERROR, Status.SKIPPED: State.SKIPPED}
# states a resumed job does not process again (ERROR too, unless --retry-failed)
DONE_STATES = (State.OK, State.QUARANTINED, State.SKIPPED)


@dataclass
class Check:
    """One verification check: a name, pass/fail, and a detail without identifying values."""

    name: str
    ok: bool
    detail: str = ""
    not_run: bool = False  # the check could not run (a missing tool); ok only when the user accepted that

    def as_dict(self) -> dict:
        d = {"check": self.name, "ok": self.ok, "detail": self.detail}
        if self.not_run:
            d["not_run"] = True
        return d


@dataclass
class Verdict:
    checks: list[Check] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks) and not self.findings

    def add(self, name: str, ok: bool, detail: str = "", not_run: bool = False) -> Check:
        c = Check(name, bool(ok), detail, not_run)
        self.checks.append(c)
        return c

    def extend(self, other: "Verdict") -> None:
        """``other``'s checks and findings after this one's (a part judged apart, in a thread)."""
        self.checks.extend(other.checks)
        self.findings.extend(other.findings)

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "checks": [c.as_dict() for c in self.checks],
            "findings": [f.as_dict() for f in self.findings],
        }


@dataclass
class Outcome:
    """What happened to one input slide."""

    input_label: str  # pseudonym or "input #N" — never the source path
    format: str | None = None
    target: str = "native"
    status: Status | str = Status.PENDING
    outputs: list[str] = field(default_factory=list)  # relative to OUT
    removals: list[Removal] = field(default_factory=list)
    verdict: Verdict | None = None
    error: str | None = None  # one-line reason (no identifying values)
    # the file of a multi-file slide (a DICOM instance) the error is about: the console's error
    # line names it (never in a report: paths stay out of OUT)
    error_file: Path | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_written: int = 0
    closed_world: dict = field(default_factory=dict)  # unreferenced bytes zeroed, tags dropped (never values)
    files: list[dict] = field(default_factory=list)  # the files verified and placed: {"file": path in OUT, "size": bytes}
    digests: list = field(default_factory=list)  # outputs' SHA-256 from the verifier's read-back (wsianon.io.digests.entries)
    images: dict | None = field(default=None, repr=False)  # the record's images of the output, rendered by a batch worker (record.prerender)
    # a batch worker's verified output still in its staging folder: how the coordinator places it
    # (``anonymize.Placement``, ``anonymize.place_staged``); None once placed
    place: Placement | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {
            "slide": self.input_label,
            "format": self.format,
            "target": self.target,
            "status": self.status,
            "outputs": self.outputs,
            "files": self.files,  # what was verified: the record certifies and delivery sends these only
            "removed": [safe_removal(r.as_dict()) for r in self.removals],  # names: vocabulary only
            "verification": None if self.verdict is None else self.verdict.as_dict(),
            "error": self.error,
            "notes": self.notes,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "bytes_in": self.bytes_in,
            "bytes_written": self.bytes_written,
            "closed_world": self.closed_world,
        }
