"""A few characters of a value found inside one of the output's keyed UIDs or pseudonyms by chance.

A keyed UID is ``2.25.`` and the ~39 decimal digits of a keyed hash.  A six-digit value (a
numeric file name, a time searched as ``150926``) stands in them by chance in about one UID of
30,000, and a DICOM output holds about eight: counting such a hit failed about one clean slide in
4,000, and for ever, since the UIDs are keyed from the slide (the same key gives the same UIDs).
The same holds for a keyed pseudonym (``WSI-`` and 16 hex digits): a five-digit file name stands
in one in about 90,000 slides. The canary scan does not count a run of at most ``CHANCE_RUN``
characters inside a keyed UID or pseudonym the output's structure holds, and the DICOM route's
value scrub does not replace one; everything else is still counted (the unit tests below)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_subprocess
from wsianon.io.scan import CHANCE_RUN, Canary, Scanner, chance_token_hit, drop_chance_hits, keyed_form, keyed_tokens
from wsianon.verify import keyedtokens

UID = b"2.25.123456150926789012345678901234567890"  # 36 digits: below 2**128
assert keyed_form(UID)


def _file(tmp_path: Path, body: bytes) -> Path:
    p = tmp_path / "out.dcm"
    p.write_bytes(b"\x08\x00\x18\x00UI" + len(body).to_bytes(2, "little") + body + b"\x00 trailing text\x00")
    return p


def _scan(path: Path, values: dict[str, str]):
    sc = Scanner([Canary(k, v) for k, v in values.items()])
    return sc, sc.scan_file(path)


def test_a_time_found_inside_a_keyed_uid_is_not_counted(tmp_path):
    p = _file(tmp_path, UID)
    sc, found = _scan(p, {"Time": "15:09:26"})
    assert len(found) == 1  # "150926" inside the UID: the scan itself finds it
    kept, n = drop_chance_hits(found, p, sc.text_patterns(), frozenset({UID}))
    assert kept == [] and n == 1


@pytest.mark.parametrize(
    "body, values, uids",
    [
        # the same digits outside any UID (free text after the value)
        (b"2.25.1234567\x00case 150926", {"Time": "15:09:26"}, {b"2.25.1234567"}),
        # a UID-shaped run the output's structure does not name as a UID
        (UID, {"Time": "15:09:26"}, set()),
        # a UID that is itself one of the values searched for: a source UID kept
        (UID, {"Time": "15:09:26", "StudyInstanceUID": UID.decode()}, {UID}),
        # nine digits: beyond chance (about 3 in 10^7 a slide)
        (UID, {"Accession": "123456150"}, {UID}),
        # a longer value matching at the same place as the six digits
        (UID, {"Time": "15:09:26", "ID": "150926789012345"}, {UID}),
    ],
    ids=["outside-uid", "not-a-structural-uid", "source-uid-kept", "nine-digits", "a-longer-value-there"],
)
def test_what_is_still_counted(tmp_path, body, values, uids):
    p = _file(tmp_path, body)
    sc, found = _scan(p, values)
    assert found
    kept, n = drop_chance_hits(found, p, sc.text_patterns(), frozenset(uids))
    assert n == 0 and kept == found


def test_the_uid_must_be_written_whole():
    pats = frozenset({b"150926"})
    u = b"2.25.1150926"
    assert chance_token_hit(b"\x00" + u + b"\x00", 7, pats, frozenset({u}))
    # the same characters as the start of a longer number (more digits, or ".5" after it)
    assert not chance_token_hit(b"\x00" + u + b"7\x00", 7, pats, frozenset({u}))
    assert not chance_token_hit(b"\x00" + u + b".5\x00", 7, pats, frozenset({u}))
    assert not chance_token_hit(b"\x001" + u + b"\x00", 8, pats, frozenset({u}))
    # the digits in the root "2.25." are not the hash's
    assert not chance_token_hit(b"\x002.25.1\x00", 1, frozenset({b"2.25"}), frozenset({b"2.25.1"}))


def test_pseudonyms_and_patient_tokens():
    pats = frozenset({b"73722"})
    slide, patient = b"WSI-e04624778db73722", b"P0A1B2C3D4E73722F"
    assert keyed_tokens(b"\x00" + slide + b"\x00x " + patient + b"/") == {slide, patient}
    assert chance_token_hit(b"\x00" + slide + b"-2\x00", 16, pats, frozenset({slide}))  # SpecimenIdentifier WSI-…-2
    assert chance_token_hit(b"=" + patient + b"\n", 12, pats, frozenset({patient}))
    # not whole (a longer word), in the "WSI-" prefix, or not made of hex digits
    assert not chance_token_hit(b"x" + slide, 16, pats, frozenset({slide}))
    assert not chance_token_hit(b" " + slide + b"9", 16, pats, frozenset({slide}))
    assert not chance_token_hit(b" " + slide, 1, frozenset({b"wsi-e0"}), frozenset({slide}))
    assert not keyed_tokens(b"WSI-E04624778DB73722 WSI-e04624778db7372 XP0A1B2C3D4E73722F")
    # a keyed upper-case hex identifier a format module names (MRXS SLIDE_ID): written against
    # other bytes by its format ("01.02" and the SLIDE_ID), so no delimiter is asked for
    sid = b"0F29D97361F4C876A1B2C3D4E5F60718"
    assert chance_token_hit(b"01.02" + sid + b"\x10\x00", 10, frozenset({b"97361"}), frozenset({sid}))
    assert not chance_token_hit(b"01.02" + sid.lower(), 10, frozenset({b"97361"}), frozenset({sid.lower()}))
    assert not keyed_tokens(b" " + sid + b" ")  # never found in text by its form alone


def test_dicom_tokens_are_read_where_the_engine_writes_them(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPInstanceUID = "2.25.77"
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"
    ds.SOPInstanceUID = "2.25.77"
    ds.StudyInstanceUID = "1.2.840.113619.2.55"  # not of keyed form
    ds.PatientID = "WSI-e04624778db73722"
    item = Dataset()
    item.SpecimenIdentifier = "WSI-e04624778db73722-2"
    item.SpecimenUID = "2.25.88"
    ds.SpecimenDescriptionSequence = Sequence([item])
    ds.StudyDescription = "WSI-0000000000000001 2.25.99"  # forms in free text: no tokens
    p = tmp_path / "x.dcm"
    ds.save_as(p, enforce_file_format=True)
    assert keyedtokens.from_dicom([p]) == {b"2.25.77", b"2.25.88", b"WSI-e04624778db73722"}


def test_keyed_form():
    assert keyed_form(b"2.25.0") and keyed_form(b"2.25." + str(2**128 - 1).encode())
    assert not keyed_form(b"2.25." + str(2**128).encode())
    assert not keyed_form(b"2.25.0123") and not keyed_form(b"2.25.") and not keyed_form(b"1.2.840.10008.1.2")


def test_a_check_of_the_limit_keeps_every_finding(tmp_path):
    p = _file(tmp_path, UID)
    sc, found = _scan(p, {"Time": "15:09:26"})
    kept, n = drop_chance_hits(found, p, sc.text_patterns(), frozenset({UID}), limit=len(found))
    assert n == 0 and kept == found


def test_philips_xml_uids_are_read_from_uid_attributes_only():
    xml = (
        '<?xml version="1.0"?><DataObject ObjectType="DPUfsImport">'
        '<Attribute Name="DICOM_STUDY_INSTANCE_UID" PMSVR="IString">2.25.111</Attribute>'
        '<Attribute Name="DICOM_DERIVATION_DESCRIPTION" PMSVR="IString">2.25.222</Attribute>'
        '<Attribute Name="PIM_DP_UFS_UID" PMSVR="IStringArray">"2.25.333" "1.2.3"</Attribute>'
        "</DataObject>"
    )
    assert keyedtokens.from_philips_xml(xml, "_UID$") == {b"2.25.111", b"2.25.333"}
    assert keyedtokens.from_philips_xml("<not xml", "_UID$") == frozenset()


def test_the_dicom_value_scrub_keeps_a_keyed_uid_and_replaces_a_uid_holding_a_value():
    from pydicom.dataset import Dataset

    from wsianon.converters.dicom.engine import Engine
    from wsianon.converters.dicom.series import Identity
    from wsianon.profiles.dicom import DicomProfile

    scanner = Scanner([Canary("Time", "15:09:26"), Canary("file name", "987654321")])
    chance = "2.25.123456150926789012345678901234567890"
    ds = Dataset()
    ds.StudyInstanceUID = chance
    ds.SeriesInstanceUID = "1.2.3.987654321.4"  # a source value in a UID no key made
    ds.SOPInstanceUID = "2.25.11987654321"  # nine digits: counted, even inside a keyed UID
    hits = Engine(DicomProfile(), b"k" * 32, Identity("S1", "P1")).scrub(ds, scanner)
    assert ds.StudyInstanceUID == chance and "StudyInstanceUID" not in hits
    assert {"SeriesInstanceUID", "SOPInstanceUID"} <= set(hits)
    assert "987654321" not in ds.SeriesInstanceUID + ds.SOPInstanceUID
    # the dummy UIDs are the slide's own: another slide's scrub of the same element gives another
    other = Dataset()
    other.SOPInstanceUID = "2.25.11987654321"
    Engine(DicomProfile(), b"k" * 32, Identity("S2", "P2")).scrub(other, scanner)
    assert other.SOPInstanceUID != ds.SOPInstanceUID and other.SOPInstanceUID.startswith("2.25.")


def test_the_dicom_value_scrub_keeps_the_slides_pseudonym():
    from pydicom.dataset import Dataset

    from wsianon.converters.dicom.engine import Engine
    from wsianon.converters.dicom.series import Identity
    from wsianon.profiles.dicom import DicomProfile

    scanner = Scanner([Canary("file name", "73722")])
    ds = Dataset()
    ds.PatientID = ds.ContainerIdentifier = "WSI-e04624778db73722"
    ds.PatientComments = "case 73722"  # the value itself, in other text: still scrubbed
    ds.StudyDescription = "WSI-e04624778db73722"  # a pseudonym's form where the engine writes none
    hits = Engine(DicomProfile(), b"k" * 32, Identity("WSI-e04624778db73722", "WSI-e04624778db73722")).scrub(ds, scanner)
    assert ds.PatientID == ds.ContainerIdentifier == "WSI-e04624778db73722"
    assert sorted(hits) == ["PatientComments", "StudyDescription"]


# ---------------------------------------------------------------------------
# whole runs: the slide's file name is six digits of one of the UIDs the run writes


def _key(tmp_path: Path) -> Path:
    key = tmp_path / "key"
    key.write_text("3c" * 32 + "\n")
    key.chmod(0o600)
    return key


def _outputs(out: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file() and f.suffix.lower() in (".dcm", ".tiff", ".isyntax"))


def _study_uid(out: Path) -> bytes:
    """The output's StudyInstanceUID (keyed from the slide's pseudonym, or from the source's UID:
    the same in every run and under any file name; any keyed UID of the output would do, this is
    one every route writes)."""
    data = _outputs(out)
    dcm = next((f for f in sorted(out.rglob("*.dcm"))), None)
    if dcm is not None:
        import pydicom

        return str(pydicom.dcmread(dcm, stop_before_pixels=True).StudyInstanceUID).encode()
    m = re.search(rb'Name="DICOM_STUDY_INSTANCE_UID"[^>]*>"?(2\.25\.\d+)', data)
    assert m, "no study UID in the Philips XML"
    return m.group(1)


def _uid_digits(out: Path) -> str:
    """Six digits standing inside the output's study UID, and nowhere else in the output."""
    data = _outputs(out)
    u = _study_uid(out)[5:]
    for i in range(len(u) - 6):
        d = u[i : i + 6]
        if d[0:1] != b"0" and data.count(d) == data.count(u):
            return d.decode()
    raise AssertionError("no six digits found only inside one UID")


@pytest.mark.parametrize("fmt", ["svs-to-dicom", "philips", "isyntax"])
def test_a_numeric_file_name_inside_a_keyed_uid_passes_run_and_verify(tmp_path, fmt):
    """Without the rule, the DICOM route's value scrub replaced the study UID (the digits are
    then not in the output), and the canary scan of every route failed the slide."""
    (tmp_path / "src").mkdir()
    target = "native"
    if fmt == "svs-to-dicom":
        from tests.fixtures.svs_gen import write_svs

        first = tmp_path / "src" / "CASE-1.svs"
        write_svs(first, levels=1, size=(768, 512))
        target = "dicom"
    elif fmt == "philips":  # the UIDs keyed from the source's, whatever the slide's name
        from tests.fixtures.philips_gen import make_philips

        first = tmp_path / "src" / "CASE-1.tiff"
        make_philips(first)
    else:
        from tests.fixtures.isyntax_gen import make_isyntax

        first = tmp_path / "src" / "CASE-1.isyntax"
        make_isyntax(first)
    key = _key(tmp_path)
    # content pseudonyms: the UIDs do not depend on the file's name
    common = ("--target", target, "--key-file", key, "--pseudonym-from", "content")
    res = run_subprocess("run", first, "-o", tmp_path / "out1", *common)
    assert res.returncode == 0, res.stdout + res.stderr
    digits = _uid_digits(tmp_path / "out1")
    named = first.parent / f"{digits}{first.suffix}"  # the same folder (a folder can name the study)
    shutil.copyfile(first, named)
    out = tmp_path / "out2"
    res = run_subprocess("run", named, "-o", out, *common, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    # the six digits are in the output: inside a UID, as planned
    assert digits.encode() in _outputs(out)
    slide = json.loads((out / "wsianon-report.json").read_text())["slides"][0]
    assert slide["status"] == "ok", slide["verification"]["checks"]
    scan = next(c for c in slide["verification"]["checks"] if c["check"] == "canary-scan")
    assert scan["ok"] and f"at most {CHANCE_RUN} characters found inside the output's keyed UIDs or pseudonyms" in scan["detail"], scan
    assert digits not in json.dumps(slide)  # the report counts, never names
    # verify --source judges it as run did
    outs = [p for p in out.iterdir() if not p.name.startswith("wsianon-")]
    res = run_subprocess("verify", *outs, "--source", named, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    checks = [c for v in json.loads(res.stdout) for c in v["checks"] if c["check"] == "canary-scan"]
    assert checks and all(c["ok"] for c in checks) and any("inside the output's keyed UIDs" in c["detail"] for c in checks), checks


# (key, file name) pairs found by search: the slide pseudonym (relpath mode) holds the file name
PSEUDONYM_CASES = {"svs-to-dicom": ("02" * 32, "73722.svs"), "mrxs": ("01" * 32, "97361.mrxs")}


@pytest.mark.parametrize("fmt", sorted(PSEUDONYM_CASES))
def test_a_numeric_file_name_inside_the_keyed_pseudonym_passes_run_and_verify(tmp_path, fmt):
    """Without the rule, the DICOM route blanked PatientID and PatientName and replaced the
    ContainerIdentifier by a dummy, and MRXS (SLIDE_NAME) failed the canary scan."""
    from wsianon.pipeline.keys import pseudonym_from

    hexkey, name = PSEUDONYM_CASES[fmt]
    stem = name.split(".")[0]
    pseudo = pseudonym_from(bytes.fromhex(hexkey), "relpath", source=Path(name), relpath=name.encode())
    assert stem in pseudo  # the search's premise: else the derivation changed and the pair must be found anew
    key = tmp_path / "key"
    key.write_text(hexkey + "\n")
    key.chmod(0o600)
    src = tmp_path / "src"
    src.mkdir()
    if fmt == "mrxs":
        from tests.fixtures.mrxs_gen import make_mrxs

        make_mrxs(src, stem)
        target = "native"
    else:
        from tests.fixtures.svs_gen import write_svs

        write_svs(src / name, levels=1, size=(768, 512))
        target = "dicom"
    out = tmp_path / "out"
    res = run_subprocess("run", "--target", target, src / name, "-o", out, "--key-file", key, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    slide = json.loads((out / "wsianon-report.json").read_text())["slides"][0]
    assert slide["status"] == "ok", slide["verification"]["checks"]
    assert not [r for r in slide["removed"] if "held a source value" in r["action"]], slide["removed"]
    scan = next(c for c in slide["verification"]["checks"] if c["check"] == "canary-scan")
    assert "inside the output's keyed UIDs or pseudonyms" in scan["detail"], scan
    if target == "dicom":
        import pydicom

        ds = pydicom.dcmread(next(out.rglob("*volume.dcm")), stop_before_pixels=True)
        assert ds.PatientID == ds.ContainerIdentifier == pseudo
    else:
        assert f"= {pseudo}".encode() in next(out.rglob("Slidedat.ini")).read_bytes()
    res = run_subprocess("verify", *[p for p in out.iterdir() if not p.name.startswith("wsianon-")], "--source", src / name, "--json")
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_numeric_file_name_inside_the_keyed_mrxs_slide_id_passes_run_and_verify(tmp_path):
    """MRXS SLIDE_ID is keyed upper-case hex of the source's length (32): five digits in a row
    stand in it for most keys. Without the rule the canary scan of Slidedat.ini, Index.dat and
    every Data file failed the slide for ever."""
    from tests.fixtures.mrxs_gen import CANARIES, make_mrxs
    from wsianon.converters.mrxs.redactor import keyed_slide_id

    def runs(new_id: str) -> list[str]:
        return [new_id[i : i + 5] for i in range(len(new_id) - 4) if new_id[i : i + 5].isdigit() and new_id[i] != "0"]

    # the first key (01…01, 02…02, …) whose SLIDE_ID holds five digits in a row
    hexkey, new_id = next((k, n) for k in (f"{b:02x}" * 32 for b in range(1, 256)) if runs(n := keyed_slide_id(bytes.fromhex(k), CANARIES["SLIDE_ID"])))
    stem = runs(new_id)[0]
    key = tmp_path / "key"
    key.write_text(hexkey + "\n")
    key.chmod(0o600)
    src = tmp_path / "src"
    src.mkdir()
    make_mrxs(src, stem)
    out = tmp_path / "out"
    res = run_subprocess("run", src / f"{stem}.mrxs", "-o", out, "--key-file", key, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    slide = json.loads((out / "wsianon-report.json").read_text())["slides"][0]
    assert slide["status"] == "ok", slide["verification"]["checks"]
    assert f"SLIDE_ID = {new_id}".encode() in next(out.rglob("Slidedat.ini")).read_bytes()
    scan = next(c for c in slide["verification"]["checks"] if c["check"] == "canary-scan")
    assert "inside the output's keyed UIDs or pseudonyms" in scan["detail"], scan
    res = run_subprocess("verify", *[p for p in out.iterdir() if not p.name.startswith("wsianon-")], "--source", src / f"{stem}.mrxs", "--json")
    assert res.returncode == 0, res.stdout + res.stderr


# a UUID-derived UID (2.25. and at most 39 digits below 2**128) a writer built around the scan's
# date: its eight digits are the source's, not a keyed hash's
RETAINED_UID = "2.25.31415926" + "20240311" + "271828182845904523"
assert keyed_form(RETAINED_UID.encode())


def _dicom_source_with_a_dated_uid(tmp_path: Path) -> Path:
    import pydicom

    from tests.fixtures.dicom_gen import DATES, make_dicom

    assert DATES["StudyDate"] in RETAINED_UID
    src = make_dicom(tmp_path / "src").path
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = RETAINED_UID
        ds.save_as(f)
    return src


def test_a_value_inside_a_uid_the_source_holds_is_no_chance(tmp_path):
    """``retain-uids`` keeps the source's SeriesInstanceUID; a source whose UID holds its
    StudyDate's eight digits kept them, and the chance rule (stop 44) passed them as a keyed
    hash's characters: the output carried the scan date and was verified (stop 45).  A token
    the source holds is no keyed hash's: the value scrub now replaces the UID, and the verifier
    counts such a hit wherever the redactor left one."""
    import pydicom

    src = _dicom_source_with_a_dated_uid(tmp_path)
    key = _key(tmp_path)
    out = tmp_path / "out"
    res = run_subprocess("run", "--target", "dicom", "--profile", "retain-uids", src, "-o", out, "--key-file", key, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert b"20240311" not in _outputs(out)
    slide = json.loads((out / "wsianon-report.json").read_text())["slides"][0]
    assert slide["status"] == "ok", slide["verification"]["checks"]
    assert [r for r in slide["removed"] if r["name"].endswith("SeriesInstanceUID") and "held a source value" in r["action"]], slide["removed"]
    # the verifier on its own: the source's UID put back into the output (as a redactor without
    # the scrub would have left it) is counted, not taken for chance
    outs = [p for p in out.iterdir() if not p.name.startswith("wsianon-")]
    for f in out.rglob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = RETAINED_UID
        ds.save_as(f)
    res = run_subprocess("verify", *outs, "--source", src, "--profile", "retain-uids", "--json")
    assert res.returncode != 0, res.stdout
    checks = [c for v in json.loads(res.stdout) for c in v["checks"] if c["check"] == "canary-scan"]
    assert checks and not all(c["ok"] for c in checks), checks
    assert "20240311" not in res.stdout + res.stderr  # counted, never named


def test_the_source_tokens_are_read_from_values_and_headers(tmp_path):
    src = _dicom_source_with_a_dated_uid(tmp_path)
    files = sorted(src.glob("*.dcm"))
    (tmp_path / "plain").mkdir()
    bare = tmp_path / "plain" / "instance"  # a source instance without an extension
    shutil.copyfile(files[0], bare)
    assert RETAINED_UID.encode() in keyedtokens.of_source([], [bare])
    assert RETAINED_UID.encode() not in keyedtokens.from_dicom([bare])  # outputs: .dcm only
    assert keyedtokens.of_source([f"uid {RETAINED_UID}", "WSI-0123456789abcdef"]) >= {RETAINED_UID.encode(), b"WSI-0123456789abcdef"}
    assert keyedtokens.of_source(["2.25.0123", "no token"]) == frozenset()  # a leading zero is no keyed form
    assert b"4F3A9C0E1B2D48A6B7C8D9E0F1A2B3C4" in keyedtokens.of_source([" 4f3a9c0e1b2d48a6b7c8d9e0f1a2b3c4"])  # an MRXS SLIDE_ID
    # as every route reads them: an inventory's fields, the values searched for, its DICOM files
    from types import SimpleNamespace

    from wsianon.io.scan import Canary

    inv = SimpleNamespace(fields=[SimpleNamespace(value=f"uid {UID.decode()}"), SimpleNamespace(value=None)], input_files=[bare])
    assert keyedtokens.of_inventory(inv, [Canary("ID", "WSI-0123456789abcdef")]) == {UID, b"WSI-0123456789abcdef"}
    assert keyedtokens.of_inventory(inv, [], dicom=True) == {UID, RETAINED_UID.encode()}


def test_scan_outputs_counts_a_hit_inside_a_token_the_source_holds(tmp_path):
    """The wiring every route uses: ``tokens`` from the output, ``foreign`` (called at the first
    hit only) from the source; a token in both is no chance."""
    from wsianon.io.scan import Canary
    from wsianon.pipeline.model import Verdict
    from wsianon.pipeline.verify import scan_outputs

    p = _file(tmp_path, UID)
    canaries = [Canary("Time", "15:09:26")]
    calls = []

    def foreign(held):
        def read():
            calls.append(held)
            return frozenset(held)

        return read

    for held, counted in ((set(), False), ({UID}, True)):
        v = Verdict()
        scan_outputs(canaries, [p], v, tokens=frozenset({UID}), foreign=foreign(held))
        scan = next(c for c in v.checks if c.name == "canary-scan")
        assert scan.ok is (not counted) and len(v.findings) == int(counted), scan
    assert len(calls) == 2
    clean = tmp_path / "clean.dcm"
    clean.write_bytes(b"no value here")
    scan_outputs(canaries, [clean], Verdict(), tokens=frozenset({UID}), foreign=foreign(set()))
    assert len(calls) == 2  # no hit: the source is not read
