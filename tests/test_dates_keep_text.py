"""``--dates keep`` keeps dates, not whatever a date field holds: an Aperio Time or Time Zone
value with free text after the time ("15:09:26 DOE^JANE") was kept whole, and the slide was then
quarantined by the vocabulary check (a clean slide lost; the option matrix's follow-up for Aperio,
as NDPI's ``date_only``).  Such a value is blanked now; a real date, time and zone are kept."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.svs_gen import write_svs
from wsianon.profiles.policy import clock_only

NAME = "DOE^JANE"


@pytest.mark.parametrize("key", ["Time", "Time Zone", "Date"])
def test_free_text_in_an_aperio_date_field_is_blanked_under_keep(tmp_path, cli, key):
    value = {"Time": "15:09:26", "Time Zone": "GMT+0713", "Date": "03/14/17"}[key]
    src = tmp_path / "in" / "s.svs"
    src.parent.mkdir()
    write_svs(src, extra={key: f"{value} {NAME}"})
    out = tmp_path / "out"
    code, _, stderr = cli("run", str(src), "-o", str(out), "--dates", "keep")
    slide = json.loads((out / "wsianon-report.json").read_text())["slides"][0]
    assert code == 0 and slide["status"] == "ok", (stderr, slide.get("error"))
    data = b"".join(p.read_bytes() for p in out.glob("*.svs"))
    assert NAME.encode() not in data
    # the other date fields are kept as they were (the option still keeps dates)
    for k, v in {"Time": "15:09:26", "Time Zone": "GMT+0713", "Date": "03/14/17"}.items():
        if k != key:
            assert f"|{k} = {v}".encode() in data, k


def test_clock_only_accepts_dates_times_and_zones_only():
    for v in ("12/29/09", "09:59:15", "GMT-05:00", "GMT+0713", "2021-03-11T10:22:09Z", "2019/07/23 14:51:09"):
        assert clock_only(v), v
    for v in ("", "GMT", "15:09:26 DOE^JANE", "Doe 12", "12:00 noon"):
        assert not clock_only(v), v
