"""Bounded, seeded fuzzing of ``wsianon run`` / ``inspect`` / ``verify`` on Philips iSyntax.

``tests/test_fuzz.py`` damages the TIFF family, MRXS and (``test_fuzz_dicom``) DICOM folders; an
iSyntax file is an XML header (``DPUfsImport``), CR LF EOT and a binary body, and its damage is
of other kinds: an XML header cut short or bit-flipped, a number attribute (a level's rows or
columns, the block count, a dimension range) set to an extreme or to no number, the base64 of a
label, macro or block header table broken or made huge, the terminator gone, the WSI object
repeated, the body's seek table damaged.  Every case must end as ``test_fuzz``'s do: no
traceback, hang or internal error, the input unchanged, nothing half-written in OUT, peak memory
within ``MAX_GROWTH_MIB``; exit 0 with the slide verified, or exit 1 with one error line naming
the file (or the slide quarantined).  ``WSIANON_FUZZ_CASES`` / ``WSIANON_FUZZ_SEED`` as there
(default 24 cases)."""

from __future__ import annotations

import base64
import faulthandler
import json
import os
import random
import re
import resource
import shutil

import pytest

from tests.fixtures.isyntax_gen import TERMINATOR, make_isyntax
from tests.test_fuzz import CASE_TIMEOUT, _check_case, _check_read_only, _grew, _judge_cases, _leaks, _outcome, _verify_agrees, draw_options, generators

CASES = int(os.environ.get("WSIANON_FUZZ_CASES", "24"))
SEED = int(os.environ.get("WSIANON_FUZZ_SEED", "12"))

_NUMBER = re.compile(rb'PMSVR="I(?:UInt32|UInt16|Int32Array|Double|DoubleArray)">([^<]*)<')
_B64 = re.compile(rb'PMSVR="IString">([A-Za-z0-9+/=]{64,})<')
_WSI = re.compile(rb'<DataObject ObjectType="DPScannedImage">(?:(?!<DataObject ObjectType="DPScannedImage">).)*?>WSI</Attribute>', re.S)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    return make_isyntax(tmp_path_factory.mktemp("ifuzz-original") / "case.isyntax", width=512, height=384, levels=2, body_size=64 * 1024)


def mutate(data: bytes, header_len: int, rng: random.Random) -> tuple[bytes, str]:
    """One damage of an iSyntax file's bytes (``header_len``: the XML header's length)."""
    b = bytearray(data)
    kind = rng.choice(["truncate-xml", "truncate", "flip-xml", "number", "base64", "base64-huge", "terminator", "wsi-twice", "flip-body", "close-tag"])
    if kind == "truncate-xml":
        cut = rng.randrange(0, header_len + len(TERMINATOR))
        return bytes(b[:cut]), f"truncated in the header at {cut}"
    if kind == "truncate":
        cut = rng.randrange(header_len, len(b))
        return bytes(b[:cut]), f"truncated in the body at {cut}"
    if kind == "flip-xml":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(0, header_len)
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b), "bit flips in the header"
    if kind == "number":
        ms = list(_NUMBER.finditer(data[:header_len]))
        m = rng.choice(ms)
        value = rng.choice([b"4294967295", b"-1", b"99999999999999999999", b"x", b"", b"0", b"1e308", b"nan", b"0 1 4294967295", b"-5 1 3", b"0 0 7"])
        return bytes(b[: m.start(1)] + value + b[m.end(1) :]), f"number attribute at {m.start(1)} set to {value.decode()!r}"
    if kind in ("base64", "base64-huge"):
        ms = list(_B64.finditer(data[:header_len]))
        m = rng.choice(ms)
        if kind == "base64":
            value = rng.choice([b"!!!!" + m.group(1)[4:], m.group(1)[: len(m.group(1)) // 2 + 1], b"AAAA", base64.b64encode(rng.randbytes(300))])
        else:
            value = base64.b64encode(b"\xff\xd8" + bytes(3 << 20))  # a 3 MB 'JPEG' of zeros
        return bytes(b[: m.start(1)] + value + b[m.end(1) :]), f"base64 at {m.start(1)} replaced ({kind})"
    if kind == "terminator":
        return bytes(b[:header_len] + b[header_len + len(TERMINATOR) :]), "terminator removed"
    if kind == "wsi-twice":
        m = _WSI.search(data[:header_len])
        assert m is not None
        return bytes(b[: m.start()] + data[m.start() : m.end()] + b"</DataObject>" + b[m.start() :]), "a WSI object's head repeated"
    if kind == "flip-body":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(header_len + len(TERMINATOR), min(len(b), header_len + len(TERMINATOR) + 256))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b), "bit flips in the seek table"
    # close-tag: one closing tag removed
    closes = [m.start() for m in re.finditer(rb"</(?:Attribute|DataObject|Array)>", data[:header_len])]
    at = rng.choice(closes)
    end = data.index(b">", at) + 1
    return bytes(b[:at] + b[end:]), f"a closing tag at {at} removed"


def test_fuzz_isyntax(original, tmp_path):
    faulthandler.dump_traceback_later(CASE_TIMEOUT * 3, exit=True)  # a hang in C code still ends the test run
    try:
        rng, options_rng = generators(f"{SEED}:isyntax")  # the damage, each case's options (test_fuzz.OPTIONS)
        data = original.path.read_bytes()
        problems: list[str] = []
        outcomes: dict[str, int] = {}
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
        for i in range(CASES):
            case_dir, out = tmp_path / f"c{i}", tmp_path / f"o{i}"
            case_dir.mkdir()
            src = case_dir / original.path.name
            damaged, what = mutate(data, original.header_len, rng)
            src.write_bytes(damaged)
            options = draw_options(options_rng, to_dicom=True)
            cid = f"isyntax #{i} ({what}){' ' + ' '.join(options) if options else ''}"
            found = _check_case(cid, case_dir, src, out, False, options)
            found += _leaks(cid, damaged, out, original.text_canaries())
            found += _verify_agrees(cid, out, src, options, False)
            found += _grew(cid, peak_before)
            peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
            if i % 3 == 0:
                for command in ("inspect", "verify"):
                    found += _check_read_only(cid, case_dir, src, False, command)
                    found += _grew(f"{cid} [{command}]", peak_before)
                    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
            problems += found
            slides = _outcome(out, outcomes)
            print(f"#{i} {what}: {[s['status'] for s in slides]}")  # shown by -s
            for p in (case_dir, out, tmp_path / f"o{i}.quarantine"):
                shutil.rmtree(p, ignore_errors=True)
            faulthandler.dump_traceback_later(CASE_TIMEOUT * 3, exit=True)
        _judge_cases(f"isyntax fuzz seed {SEED}", problems, outcomes, CASES)
    finally:
        faulthandler.cancel_dump_traceback_later()


def test_every_damage_kind_applies(original):
    """The mutator's patterns find what they damage in the fixture (a pattern that matched nothing
    would make its kind a no-op or an error)."""
    head = original.path.read_bytes()[: original.header_len]
    assert len(_NUMBER.findall(head)) >= 10
    assert len(_B64.findall(head)) >= 3  # the macro, the label, the block header table
    assert _WSI.search(head) is not None
    rng = random.Random(0)
    seen = set()
    data = original.path.read_bytes()
    for _ in range(200):
        out, what = mutate(data, original.header_len, rng)
        assert out != data, what
        seen.add(what.split(" at ")[0].split(" in ")[0].split(" set ")[0])
    assert len(seen) == 7, seen  # truncation, bit flips, number, base64, terminator, WSI repeated, closing tag


def test_the_leak_check_finds_a_canary_in_a_verified_output(tmp_path):
    """The control of ``_leaks``: a canary the damaged source holds, found in an output the report
    calls verified, is a finding; in a quarantined one (never shared) it is not."""
    canaries = {"DICOM_DEVICE_SERIAL_NUMBER": "ISSERIAL7Q1"}
    damaged = b"<xml>ISSERIAL7Q1</xml>"
    (tmp_path / "a.isyntax").write_bytes(b"...ISSERIAL7Q1...")
    for status, expect in (("ok", 1), ("failed", 0)):
        (tmp_path / "wsianon-report.json").write_text(json.dumps({"slides": [{"status": status, "outputs": ["a.isyntax"]}]}))
        assert len(_leaks("case", damaged, tmp_path, canaries)) == expect
    assert _leaks("case", b"<xml/>", tmp_path, canaries) == []  # damage destroyed the canary: nothing to find
