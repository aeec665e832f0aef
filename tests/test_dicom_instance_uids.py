"""A converted slide's instance UIDs and numbers follow the output order, so every run of one
slide with one key gives the same instances the same UIDs.  wsidicom asks for instance UIDs from
its writer threads in whichever order they run; two runs could swap two levels' UIDs (seen about
once in five runs of a three-level slide) before ``_place_instances`` set them."""

from __future__ import annotations

from pathlib import Path

import pydicom

from wsianon.converters.dicom.bridge import KeyedUidGenerator

from .fixtures.svs_gen import write_svs


def _headers(out: Path) -> dict[str, pydicom.Dataset]:
    return {f.name: pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(out.rglob("*.dcm"))}


def test_instance_uids_and_numbers_follow_output_order(cli, tmp_path):
    src = write_svs(tmp_path / "CASE-0042-uids.svs", size=(4096, 3072), levels=3).path
    key = tmp_path / "key"
    key.write_text((b"k" * 32).hex())
    key.chmod(0o600)
    runs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        code, _o, err = cli("run", "--target", "dicom", str(src), "-o", str(out), "--key-file", str(key))
        assert code == 0, err
        runs.append(_headers(out))
    first = runs[0]
    assert len([n for n in first if "volume" in n]) == 3
    folder = next((tmp_path / "out0").rglob("*.dcm")).parent.name  # the slide's pseudonym
    uids = KeyedUidGenerator(b"k" * 32, folder)
    for n, (name, ds) in enumerate(first.items(), 1):
        assert int(ds.InstanceNumber) == n and name.startswith(f"{n:04d}-")
        assert str(ds.SOPInstanceUID) == str(uids.instance(n)) == str(ds.file_meta.MediaStorageSOPInstanceUID)
    assert len({str(ds.SOPInstanceUID) for ds in first.values()}) == len(first)
    for name, ds in runs[1].items():  # the second run: the same UIDs on the same instances
        assert (str(ds.SOPInstanceUID), int(ds.InstanceNumber)) == (str(first[name].SOPInstanceUID), int(first[name].InstanceNumber))
    # and the same files, byte for byte
    one, two = (sorted((tmp_path / f"out{i}").rglob("*.dcm")) for i in range(2))
    assert [p.name for p in one] == [p.name for p in two]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two))
