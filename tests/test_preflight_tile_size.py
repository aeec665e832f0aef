"""A tiled page whose TileWidth x TileLength is more than a decoder is given is refused before
anything reads it (``preflight._check_tile_size``): OpenSlide allocates a tile's pixels before
decoding it, and glib aborts the whole process (the batch with it) when the machine cannot give
them. Fuzz seed 73, SCN case 1: a bit flip made a Leica level's tiles 256 x 67,109,120 px; the
decode probe read a corner of each level outside the image, and the verifier's sampled reads then
asked glib for 64 GiB."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
import tifffile

from tests.conftest import run_subprocess
from wsianon.errors import CorruptInput
from wsianon.pipeline import preflight
from wsianon.verify.padding import MAX_TILE_PIXELS


def _set_tile_length(path: Path, page: int, rows: int) -> None:
    """Rewrite page ``page``'s TileLength entry in place as one LONG of ``rows`` (classic TIFF)."""
    with tifffile.TiffFile(path) as tf:
        tag = tf.pages[page].tags["TileLength"]
        at, bo = tag.offset, tf.byteorder
    with open(path, "r+b") as fh:
        fh.seek(at)
        fh.write(struct.pack(bo + "HHII", 323, 4, 1, rows))


def test_tiles_larger_than_a_decoder_is_given_are_refused_by_the_structure_check(tmp_path):
    from tests.fixtures.svs_gen import write_svs

    src = write_svs(tmp_path / "a.svs").path
    preflight.check_structure(src)  # the slide as written passes
    _set_tile_length(src, 0, MAX_TILE_PIXELS // 256 + 256)
    with pytest.raises(CorruptInput) as err:
        preflight.check_structure(src)
    assert err.value.path == src
    assert "tiles of more than" in err.value.reason
    assert str(MAX_TILE_PIXELS // 256 + 256) not in err.value.reason  # no number read from the file


def test_tiles_of_the_bound_pass():
    class _Ts:
        path = Path("x.tif")

        def __init__(self, w, h):
            self.v = {322: w, 323: h}

        def value(self, ifd, tag, default=None):
            return self.v[tag]

    class _Ifd:
        index = 0

        def __contains__(self, tag):
            return tag == 324

    preflight._check_tile_size(_Ts(256, MAX_TILE_PIXELS // 256), _Ifd())  # exactly the bound
    with pytest.raises(CorruptInput):
        preflight._check_tile_size(_Ts(256, MAX_TILE_PIXELS // 256 + 1), _Ifd())
    with pytest.raises(CorruptInput, match="not a number"):
        preflight._check_tile_size(_Ts(b"256", 256), _Ifd())


def test_the_fuzz_case_that_aborted_the_process_is_one_error_line(tmp_path):
    """The very case (its generator and mutation replayed from the fuzz test's seed): before the
    check, ``wsianon run`` died of SIGABRT in glib (exit 134) and took the batch with it."""
    import tests.test_fuzz as TF

    orig = TF._make("scn", tmp_path / "orig")
    rng = random.Random("73:scn")
    for _ in range(2):  # case 0, then case 1
        data, what = TF._mutate_tiff(orig.read_bytes(), rng)
    assert what == "bit flips in IFD at 133808", what
    src = tmp_path / "in"
    src.mkdir()
    (src / orig.name).write_bytes(data)
    from tests.fixtures.svs_gen import write_svs

    write_svs(src / "b.svs")
    res = run_subprocess("run", str(src), "-o", str(tmp_path / "out"))
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and orig.name in errors[0] and "tiles of" in errors[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert len(list((tmp_path / "out").glob("*.svs"))) == 1  # the batch's other slide processed
