"""``dicom: pyramid`` keeps a middle level's decoded frames for its next pair
(``verify.dicom.pyramid._Decoded``): fewer decodes, the same samples bit for bit, within its budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wsianon.verify import thumbnail as th
from wsianon.verify.dicom import pyramid as P
from wsianon.verify.dicom.common import read_dataset


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory) -> list:
    """A DICOM output of four VOLUME levels whose pairs are sampled (``_render_pair``)."""
    from tests.fixtures.svs_gen import write_svs
    from typer.testing import CliRunner

    from wsianon.cli import app

    tmp = tmp_path_factory.mktemp("decoded")
    src = tmp / "src"
    src.mkdir()
    write_svs(src / "a.svs", size=(4096, 3072), levels=4)
    out = tmp / "out"
    res = CliRunner().invoke(app, ["run", str(src), "-o", str(out), "--target", "dicom"], catch_exceptions=False)
    assert res.exit_code == 0, res.stdout
    return [(p, read_dataset(p)) for p in sorted(Path(out).rglob("*.dcm"))]


_REAL_PAIR, _REAL_DECODE = P._render_pair, th._decoded_small


def _judged(dsets, monkeypatch, decoded_cls) -> tuple[list, int, tuple]:
    pairs: list = []
    real_pair, real_decode = _REAL_PAIR, _REAL_DECODE
    count = [0]

    def pair(*a):
        r = real_pair(*a)
        pairs.append(r)
        return r

    def decode(*a):
        count[0] += 1
        return real_decode(*a)

    monkeypatch.setattr(P, "_render_pair", pair)
    monkeypatch.setattr(th, "_decoded_small", decode)
    monkeypatch.setattr(th, "REF_MAX_PIXELS", 0)  # every pair sampled together, as a large slide's are
    monkeypatch.setattr(P, "_Decoded", decoded_cls)
    verdict = P.unlike_levels(dsets)
    return pairs, count[0], verdict


class _Forgetting(P._Decoded):
    def put(self, plane, k, a, f) -> None:  # keeps nothing: every frame decoded each time it is asked for
        return None


def test_a_middle_level_is_decoded_once_for_both_its_pairs(pyramid, monkeypatch):
    kept, n_kept, verdict_kept = _judged(pyramid, monkeypatch, P._Decoded)
    plain, n_plain, verdict_plain = _judged(pyramid, monkeypatch, _Forgetting)
    assert len(kept) == len(plain) >= 2  # at least one middle level: the smaller of one pair, the larger of the next
    assert n_kept < n_plain, (n_kept, n_plain)
    assert verdict_kept == verdict_plain and verdict_kept[0] == [] and verdict_kept[1] == len(kept)
    for a, b in zip(kept, plain):
        for (x, cx), (y, cy) in zip(a, b):
            assert np.array_equal(x, y) and np.array_equal(cx, cy)


def test_the_budget_bounds_what_is_kept():
    d = P._Decoded(budget=3000)
    plane = object()
    a = np.zeros((3, 10, 10), np.float32)  # 1,200 bytes
    for k in range(5):
        d.put(plane, k, a, 0.125)
    assert d.used == 2400 and len(d.frames) == 2
    assert d.get(plane, 0) is not None and d.get(plane, 4) is None
    d.put(plane, 0, a, 0.125)  # kept already: not counted twice
    assert d.used == 2400
