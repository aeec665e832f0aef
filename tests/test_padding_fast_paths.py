"""The padding check's arithmetic, made cheaper (sliced rectangles instead of boolean masks,
channel-first colour planes, the cells' maximum over one axis at a time), gives the very values of
the plain formulation kept here as the reference: bit for bit, so no verdict can move."""

from __future__ import annotations

import numpy as np
import pytest

from wsianon.verify import padding as P


def _cells_reference(dev: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    hh, ww = -(-h // P.CELL) * P.CELL, -(-w // P.CELL) * P.CELL
    m = np.zeros((hh, ww), bool)
    m[:h, :w] = mask
    n = m.reshape(hh // P.CELL, P.CELL, ww // P.CELL, P.CELL).sum(axis=(1, 3))
    d = np.zeros((hh, ww), np.float32)
    d[:h, :w] = np.where(mask, dev, 0)
    d = d.reshape(hh // P.CELL, P.CELL, ww // P.CELL, P.CELL)
    return np.where(n > 0, d.sum(axis=(1, 3)) / np.maximum(n, 1), -1), np.where(n > 0, d.max(axis=(1, 3)), -1)


def _dev_chroma_reference(a: np.ndarray, ref, scale: float, sub: tuple[int, int]) -> np.ndarray:
    sy, sx = sub
    d = a.astype(np.float32) - np.asarray(ref).astype(np.float32)
    dr, dg, db = d[..., 0], d[..., 1], d[..., 2]
    lum = np.abs(np.float32(0.299) * dr + np.float32(0.587) * dg + np.float32(0.114) * db)
    cb = np.float32(-0.168736) * dr + np.float32(-0.331264) * dg + np.float32(0.5) * db
    cr = np.float32(0.5) * dr + np.float32(-0.418688) * dg + np.float32(-0.081312) * db
    h, w = lum.shape
    cbm = np.abs(cb.reshape(h // sy, sy, w // sx, sx).mean(axis=(1, 3), dtype=np.float32))
    crm = np.abs(cr.reshape(h // sy, sy, w // sx, sx).mean(axis=(1, 3), dtype=np.float32))
    c = np.maximum(cbm, crm).repeat(sy, axis=0).repeat(sx, axis=1)
    return np.maximum(lum, c) / np.float32(scale)


@pytest.mark.parametrize("seed", range(8))
def test_cells_equal_the_masked_reference(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        h, w = int(rng.integers(1, 90)), int(rng.integers(1, 90))
        ry, rx = int(rng.integers(0, h)), int(rng.integers(0, w))
        dev = (rng.random((h, w)) * 255).astype(np.float32)
        mask = np.zeros((h, w), bool)
        mask[ry:, rx:] = True
        grid = P._Grid((h, w), ry, rx)
        mean, mx = grid.cells(dev)
        want_mean, want_mx = _cells_reference(dev, mask)
        assert np.array_equal(mean, want_mean) and np.array_equal(mx, want_mx)
        assert np.array_equal(grid.has, _cells_reference(np.ones((h, w), np.float32), mask)[0] > 0)


@pytest.mark.parametrize("sub", [(2, 2), (1, 2), (2, 1)])
def test_chroma_deviation_equals_the_channel_last_reference(sub):
    rng = np.random.default_rng(sum(sub))
    for _ in range(30):
        h = sub[0] * int(rng.integers(1, 40))
        w = sub[1] * int(rng.integers(1, 40))
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for ref in (
            rng.integers(0, 256, 3, dtype=np.uint8),  # the uniform model: one colour
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8),  # a neighbour, a reused buffer
            a[:, ::-1],  # a strided view (the replicated model indexes the tile)
        ):
            got = P._dev_chroma(a, ref, 1.0, sub)
            want = _dev_chroma_reference(a, ref, 1.0, sub)
            assert got.shape == (h, w)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)  # the reference averages by mean()
            assert np.array_equal(got, P._dev_chroma(np.ascontiguousarray(a), np.ascontiguousarray(ref), 1.0, sub))


def test_a_uniform_padding_is_explained_and_text_in_it_is_not():
    """The verdicts the arithmetic serves: white padding passes, a dark mark in it fails."""
    rng = np.random.default_rng(5)
    tile = np.full((64, 64, 3), 255, np.uint8)
    tile[:40, :40] = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert P.judge_tile(tile, 40, 40, chroma=(2, 2))[0] is None
    marked = tile.copy()
    marked[50:58, 10:30] = 0  # below the image, well away from its edge
    why, stats = P.judge_tile(marked, 40, 40, chroma=(2, 2))
    assert why is not None and stats["max"] > P.MAX_DEV
