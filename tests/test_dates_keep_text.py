"""``--dates keep`` keeps dates, not whatever a date field holds: an Aperio Time or Time Zone
value with free text after the time ("15:09:26 DOE^JANE") was kept whole, and the slide was then
quarantined by the vocabulary check (a clean slide lost; the option matrix's follow-up for Aperio,
as NDPI's ``date_only``).  Such a value is blanked now; a real date, time and zone are kept."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.svs_gen import write_svs
from wsianon.profiles.policy import clock_only, date_only

NAME = "DOE^JANE"


def _kept_svs(tmp_path, cli, extra: dict[str, str]) -> bytes:
    """An SVS with ``extra`` description keys run with ``--dates keep``: shared (not quarantined);
    the output's bytes."""
    src = tmp_path / "in" / "s.svs"
    src.parent.mkdir()
    write_svs(src, extra=extra)
    out = tmp_path / "out"
    code, _, stderr = cli("run", str(src), "-o", str(out), "--dates", "keep")
    slide = json.loads((out / "wsianon-report.json").read_text())["slides"][0]
    assert code == 0 and slide["status"] == "ok", (stderr, slide.get("error"))
    return b"".join(p.read_bytes() for p in out.glob("*.svs"))


@pytest.mark.parametrize("key", ["Time", "Time Zone", "Date"])
def test_free_text_in_an_aperio_date_field_is_blanked_under_keep(tmp_path, cli, key):
    value = {"Time": "15:09:26", "Time Zone": "GMT+0713", "Date": "03/14/17"}[key]
    data = _kept_svs(tmp_path, cli, {key: f"{value} {NAME}"})
    assert NAME.encode() not in data
    # the other date fields are kept as they were (the option still keeps dates)
    for k, v in {"Time": "15:09:26", "Time Zone": "GMT+0713", "Date": "03/14/17"}.items():
        if k != key:
            assert f"|{k} = {v}".encode() in data, k


# real forms: Aperio Date / Time / Time Zone, GT450's zone, ISO 8601, TIFF DateTime, NDPI's map,
# MRXS's day-first date, DICOM DA, a 12-hour clock, a bare zone
REAL_FORMS = (
    "12/29/09",
    "09:59:15",
    "GMT-05:00",
    "GMT+0713",
    "2021-03-11T10:22:09Z",
    "2019/07/23 14:51:09",
    "2019:07:23 14:51:09",
    "13/03/2012 11:12:13",
    "20190723",
    "2021-03-11T10:22:09.123+01:00",
    "09:59:15 AM",
    "UTC",
    "GMT",
)
# not a date: free text, and digits that are no date, time or zone (an MRN or accession number
# typed into a date field, or after a date, was kept by --dates keep and then passed verify,
# numbers being vocabulary; review of stop 28)
NOT_DATES = (
    "",
    "15:09:26 DOE^JANE",
    "Doe 12",
    "12:00 noon",
    "77123456",
    "4711",
    "55 66 77",
    "12345678",
    "19790101 4711",
    "2019-01-01 12345",
    "2019/07/23 14:51:09 4711",
    "99:99",
    "AM",
    "GMT+4711",
    "13/13/2012",
    "2019-13-01",
)


def test_clock_only_accepts_dates_times_and_zones_only():
    for v in REAL_FORMS:
        assert clock_only(v), v
    for v in NOT_DATES:
        assert not clock_only(v), v


def test_date_only_needs_a_real_date():
    for v in ("12/29/09", "2021-03-11T10:22:09Z", "2019/07/23 14:51:09", "2019:07:23 14:51:09", "20190723", "13/03/2012 11:12:13"):
        assert date_only(v), v
    for v in (*NOT_DATES, "09:59:15", "GMT-05:00", "UTC"):
        assert not date_only(v), v


@pytest.mark.parametrize("key,value", [("Date", "77123456"), ("Time", "55 66 77")])
def test_a_number_in_an_aperio_date_field_is_blanked_under_keep(tmp_path, cli, key, value):
    data = _kept_svs(tmp_path, cli, {key: value})
    assert value.encode() not in data
    assert f"|{key} = ".encode() in data  # the key stays, blanked


def test_ndpi_keep_takes_only_real_dates_and_verify_judges_every_date_key(tmp_path, cli):
    """An NDPI map's Created / Updated under ``--dates keep``: a real date is kept, a date followed
    by a number is removed; ``wsianon verify`` (no policy) fails a kept whole date in *either* key
    (it looked at Created only: an output keeping Updated whole passed)."""
    from tests.fixtures.ndpi_gen import CANARIES, make_ndpi_info

    can = {k: v for k, v in CANARIES.items() if not k.startswith("PropertyMap:Created")}
    can["PropertyMap:Updated"] = "2020/01/02 03:04:05"
    can["PropertyMap:Created"] = "2019/07/23 14:51:09 4711"
    src = make_ndpi_info(tmp_path / "in" / "s.ndpi", canaries=can).path
    out = tmp_path / "out"
    code, _, stderr = cli("run", str(src), "-o", str(out), "--dates", "keep")
    assert code == 0, stderr
    (ndpi,) = out.glob("*.ndpi")
    data = ndpi.read_bytes()
    assert b"Updated=2020/01/02 03:04:05" in data
    assert b"4711" not in data and b"Created=" not in data
    code, stdout, _ = cli("verify", str(ndpi), "--json")
    rec = json.loads(stdout[stdout.index("[") :])[0]
    assert code != 0 and not rec["ok"]
    assert "Updated" in json.dumps(rec) and "2020/01/02" not in json.dumps(rec)
