"""False positives: a clean DICOM WSI whose File Meta a DICOM toolkit rewrote (a PACS on store,
dcmodify/dcmconv, a converter) passes `wsianon verify` without its source; a toolkit's root with
other digits after it stays a finding."""

from __future__ import annotations

import pytest

from wsianon.verify.dicom_attrs import check_dicom_attributes

from .conftest import shared
from .test_redteam4_dicom import HD, _judged, _read, _shared_ok

# (Implementation Class UID, Implementation Version Name) as the toolkits write them
TOOLKITS = {
    "dcmtk": ("1.2.276.0.7230010.3.0.3.6.7", "OFFIS_DCMTK_367"),
    "dcm4che": ("1.2.40.0.13.1.3", "dcm4che-5.29.2"),
    "gdcm": ("1.2.826.0.1.3680043.2.1143.107.104.103.115.3.0.10", "GDCM 3.0.10"),
    "pixelmed": ("1.3.6.1.4.1.5962.99.2", "PIXELMEDJAVA001"),
    "fo-dicom": ("1.3.6.1.4.1.30071.8", "fo-dicom 5.1.1"),
    "pynetdicom": ("1.2.826.0.1.3680043.9.3811.3.0.4", "PYNETDICOM_304"),
    "highdicom": ("1.2.826.0.1.3680043.9.7433.1.1", "highdicom0.28.2"),
}


@pytest.fixture(scope="module")
def shared_output(tmp_path_factory):
    """One DICOM-route output of a real highdicom slide, shared by every test here."""
    from typer.testing import CliRunner

    from wsianon.cli import app

    def run(*args: str):
        res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        return res.exit_code, res.stdout, res.stderr

    return _shared_ok(run, tmp_path_factory.mktemp("toolkit"), shared(HD))


def _rewritten(tmp_path, dcm, uid: str, name: str):
    ds = _read(dcm)
    ds.file_meta.ImplementationClassUID = uid
    ds.file_meta.ImplementationVersionName = name
    p = tmp_path / "meta" / dcm.parent.name / dcm.name
    p.parent.mkdir(parents=True)
    ds.save_as(p)
    return p


@pytest.mark.parametrize("toolkit", sorted(TOOLKITS))
def test_a_toolkit_rewritten_file_meta_passes_verify(tmp_path, cli, shared_output, toolkit):
    """Before: only pydicom's, the registry's or a keyed Implementation Class UID passed, and the
    toolkits' version names were no vocabulary: a wsianon output stored in a PACS (DCMTK,
    dcm4che) and fetched again, or any clean output a toolkit wrote, failed `verify`."""
    p = _rewritten(tmp_path, shared_output, *TOOLKITS[toolkit])
    assert check_dicom_attributes([p])[0] == []
    code, stdout, _ = cli("verify", str(p))
    assert code == 0, stdout


@pytest.mark.parametrize("uid", ["1.2.40.0.13.1.3.19790101", "1.2.276.0.7230010.3.0.3.4711.1979", "1.3.6.1.4.1.5962.99.2.4711"])
def test_a_toolkit_root_with_other_digits_stays_a_finding(tmp_path, cli, shared_output, uid):
    p = _rewritten(tmp_path, shared_output, uid, "OFFIS_DCMTK_367")
    _judged(cli, p, "file meta ImplementationClassUID")
