"""Stage 5: the JSON run report (one entry per slide; pseudonyms only, no identifying values)."""

from __future__ import annotations

import datetime as _dt
import platform

from wsianon import __version__
from wsianon.pipeline.model import Outcome

REPORT_NAME = "wsianon-report.json"
# where the report says the job's manifest is: never its file name, which is OUT's own folder name
# (``-o exports/S19-4711_Doe_Jane``; red team B, F8)
MANIFEST_NOTE = "private, beside OUT"


def summary(outcomes: list[Outcome]) -> dict:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return {
        "slides": len(outcomes),
        **counts,
        "bytes_in": sum(o.bytes_in for o in outcomes),
        "bytes_written": sum(o.bytes_written for o in outcomes),
    }


def policy_fields(p) -> dict:
    """The policy's choices as the report records them (and the job manifest compares them)."""
    return {
        "label": p.label,
        "macro": p.macro,
        "dates": p.dates,
        "rename": p.rename,
        "in_place": p.in_place,
        "allow_generic": p.allow_generic,
        "dicom_options": sorted(p.dicom_options),
    }


def build_report(outcomes: list[Outcome], cfg) -> dict:
    return {
        "tool": "wsianon",
        "version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "python": platform.python_version(),
        "target": cfg.target,
        "policy": {
            **policy_fields(cfg.policy),
            "thumbnail": cfg.policy.thumbnail,
            "coded_data": cfg.policy.coded_data,
            # recorded: the certificate says which checks did not run and that the user accepted that
            "accept_unrun_checks": bool(getattr(cfg.policy, "accept_unrun_checks", False)),
        },
        "summary": summary(outcomes),
        "slides": [o.as_dict() for o in outcomes],
    }
