"""``--coded-data``: how many tiles/frames verification decodes to prove their coded data holds no
bytes a decoder skips (``wsianon.verify.ecs``).  The default judges a sample of each level, read on
its own; ``all`` judges every one (see also tests/test_redteam_tiff.py)."""

from __future__ import annotations

import pydicom
import pytest

from wsianon.io.dicomframes import iter_frames
from wsianon.profiles.policy import Policy
from wsianon.verify import ecs

from .fixtures.dicom_gen import make_dicom
from .fixtures.svs_gen import write_svs


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """The largest instance of a generated DICOM WSI (a level with more frames than the sample)."""
    tmp = tmp_path_factory.mktemp("coded")
    svs = write_svs(tmp / "seed.svs", size=(2560, 2048)).path  # 80 tiles at the base level
    fx = make_dicom(tmp / "dcm", seed_svs=svs)
    path = max(fx.files, key=lambda p: p.stat().st_size)
    n = int(pydicom.dcmread(path, stop_before_pixels=True).NumberOfFrames)
    assert n > ecs.SAMPLE
    return path, n


def test_sampled_frames_are_the_frames_read_in_turn(instance):
    path, n = instance
    every = list(iter_frames(path))
    pick = set(ecs.sample_indices(n, False).tolist())
    assert len(pick) == ecs.SAMPLE and {0, n - 1} <= pick
    got = list(ecs._frames(path, n, pick))  # one fragment a frame: only the picked frames are read
    assert [i for i, _ in got] == sorted(pick) and all(f == every[i] for i, f in got)
    # a count the items do not match (several fragments a frame): read in turn, the others skipped
    got = list(ecs._frames(path, n + 1, {0, 3}))
    assert [(i, f) for i, f in got] == [(0, every[0]), (3, every[3])]
    # the frames located by the verifier's read-back: read where it found them
    import os

    from wsianon.io.dicomframes import pixel_value_offset, walk_items

    fd = os.open(path, os.O_RDONLY)
    try:
        located = walk_items(fd, pixel_value_offset(path)[1], os.fstat(fd).st_size).values[1:]
    finally:
        os.close(fd)
    assert len(located) == n
    shifted = located[1:] + located[:1]  # a wrong table would give other frames: proves it is used
    got = list(ecs._frames(path, n, {0, 5}, shifted))
    assert [(i, f) for i, f in got] == [(0, every[1]), (5, every[6])]
    got = list(ecs._frames(path, n, {0, 5}, None))  # not one fragment a frame: read in turn
    assert [(i, f) for i, f in got] == [(0, every[0]), (5, every[5])]


def test_check_dicom_says_how_many_frames_it_judged(instance):
    path, n = instance
    ds = pydicom.dcmread(path, stop_before_pixels=True)

    class V:
        def __init__(self):
            self.checks = []

        def add(self, name, ok, detail, not_run=False):
            self.checks.append((name, ok, detail))

    v = V()
    ecs.check_dicom([(path, ds)], v)
    assert v.checks[0][1] is True and v.checks[0][2].startswith(f"{ecs.SAMPLE} of {n} (up to {ecs.SAMPLE} an instance"), v.checks
    v = V()
    ecs.check_dicom([(path, ds)], v, every=True)
    assert v.checks[0][1] is True and v.checks[0][2].startswith(f"{n} JPEG"), v.checks


def test_policy_refuses_an_unknown_word():
    assert Policy().coded_data == "sample" and Policy(coded_data="all").coded_data == "all"
    with pytest.raises(ValueError, match="--coded-data must be one of sample, all"):
        Policy(coded_data="some")


def test_help_and_record_name_the_sample_size(cli):
    from wsianon.pipeline.record import policy_flags, policy_in_words

    code, out, _ = cli("run", "--help")
    assert code == 0 and "--coded-data" in out and f"up to {ecs.SAMPLE}" in " ".join(out.split())
    words = " ".join(policy_in_words({"coded_data": "sample"}))
    assert f"up to {ecs.SAMPLE} tiles" in words
    assert "every tile was decoded" in " ".join(policy_in_words({"coded_data": "all"}))
    assert policy_flags({"coded_data": "all"}).endswith("--coded-data all") and "--coded-data" not in policy_flags({"coded_data": "sample"})


def test_a_job_keeps_its_coded_data_choice(cli, tmp_path):
    """The report says of every slide how many tiles were judged: a job started with the sample is
    not resumed with ``all`` (nor the reverse), unless --overwrite."""
    (tmp_path / "in").mkdir()
    write_svs(tmp_path / "in" / "a.svs")
    key = tmp_path / "key"
    key.write_text("ab" * 32)
    key.chmod(0o600)
    out = tmp_path / "out"
    base = ("run", "--target", "native", str(tmp_path / "in"), "-o", str(out), "--key-file", str(key))
    assert cli(*base)[0] == 0
    code, stdout, stderr = cli(*base, "--coded-data", "all")
    assert code != 0 and "started with other options" in stdout + stderr
    assert cli(*base, "--coded-data", "sample")[0] == 0  # the default is the job's own choice
    assert cli(*base, "--coded-data", "all", "--overwrite")[0] == 0
    import json

    assert json.loads((out / "wsianon-report.json").read_text())["policy"]["coded_data"] == "all"


def test_judge_j2k_follows_the_codestream_walk():
    """``ecs.judge_j2k`` judges the comment and tail spans ``io.codestreams`` finds: a main-header
    comment in vocabulary words passes, anything else a writer can hide there fails."""
    import struct

    import imagecodecs
    import numpy as np

    cs = imagecodecs.jpeg2k_encode(np.zeros((64, 64, 3), np.uint8), level=80, codecformat="J2K")
    sot, sod = cs.find(b"\xff\x90"), cs.find(b"\xff\x93")
    assert cs[:2] == b"\xff\x4f" and 0 < sot < sod and cs.endswith(b"\xff\xd9")

    def com(rcom: bytes, text: bytes) -> bytes:
        return b"\xff\x64" + struct.pack(">H", len(text) + 4) + rcom + text

    def in_tile_part(seg: bytes) -> bytes:  # after SOT's 12 bytes, Psot grown by the segment
        psot = struct.unpack(">I", cs[sot + 6 : sot + 10])[0]
        head = cs[:sot] + cs[sot : sot + 6] + struct.pack(">I", psot + len(seg) if psot else 0) + cs[sot + 10 : sot + 12]
        return head + seg + cs[sot + 12 :]

    assert ecs.judge_j2k(cs) is None  # OpenJPEG's own banner: vocabulary
    assert ecs.judge_j2k(cs[:sot] + com(b"\x00\x01", b"Kakadu v7.10") + cs[sot:]) is None
    assert ecs.judge_j2k(cs + b"\x00") is None  # an odd frame's pad byte
    assert ecs.judge_j2k(cs[:sot] + com(b"\x00\x01", b"Doe Jane MRN4711") + cs[sot:]) == "JPEG 2000 comment outside the vocabulary"
    assert ecs.judge_j2k(cs[:sot] + com(b"\x00\x00", b"\x01\x02") + cs[sot:]) == "JPEG 2000 binary comment"
    assert ecs.judge_j2k(in_tile_part(com(b"\x00\x01", b"Kakadu"))) == "JPEG 2000 comment in a tile-part header"
    assert ecs.judge_j2k(cs + b"Doe") == "bytes after the JPEG 2000 end of codestream"
    assert ecs.judge_j2k(cs[:sot] + b"\xff\x20\x00\x04ab" + cs[sot:]) == "JPEG 2000 codestream cannot be followed"
    assert ecs.judge_j2k(b"\xff\xd8\xff\xd9") == "JPEG 2000 codestream cannot be followed"
