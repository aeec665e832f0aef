"""The review sheet's private cache of rendered source images (``pipeline/sheetcache.py``).

A re-run of a finished job rendered every source's label and macro again for the private review
sheet (about two thirds of a re-run with nothing to do).  Now they are kept beside the sheet
(``SHEET.images.sqlite``, mode 0600, never in OUT): a re-run renders only new or changed sources,
the sheet is the same byte for byte, and OUT, its certificate and the record's cache beside it are
untouched by it.  Renders are counted through ``write_review_sheet(on_render=...)``, and a CLI
run's rendering is seen from the cache file, which a run that renders nothing does not write.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

from wsianon.pipeline import record
from wsianon.pipeline.sheetcache import TABLE, cache_path, source_files

from .fixtures.mrxs_gen import make_mrxs
from .fixtures.svs_gen import write_svs


def _job(tmp_path: Path, cli, n: int = 3):
    (tmp_path / "in").mkdir()
    srcs = [write_svs(tmp_path / "in" / f"CASE-{i}.svs", size=(512, 384), levels=1).path for i in range(n)]
    out = tmp_path / "out"
    assert cli("key", "init", tmp_path / "job.key")[0] == 0
    code, _o, err = cli("run", tmp_path / "in", "-o", out, "--key-file", tmp_path / "job.key")
    assert code == 0, err
    return srcs, out, tmp_path / "out.review.html"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _sheet(out: Path, sheet: Path) -> list[Path]:
    """Write the sheet again; the sources rendered for it (not taken from its cache)."""
    rendered: list[Path] = []
    record.write_review_sheet(out, sheet, on_render=rendered.append)
    return rendered


def test_a_rerun_renders_no_source_again_and_a_changed_source_is(tmp_path, cli):
    srcs, out, sheet = _job(tmp_path, cli)
    cache = cache_path(sheet)
    mapping = tmp_path / "out.mapping.csv"
    first, stamp = sheet.read_bytes(), (_sha(cache), cache.stat().st_mtime_ns)
    files = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (sheet, mapping)]
    assert first.count(b"SOURCE label") == 3 and first.count(b"SOURCE macro") == 3
    # the same job again (CLI): nothing to do, nothing rendered — the cache is not even written,
    # nor are the sheet and the mapping, whose content would not change
    code, _o, err = cli("run", tmp_path / "in", "-o", out, "--key-file", tmp_path / "job.key")
    assert code == 0 and "3 slide(s) already done" in err, err
    assert (_sha(cache), cache.stat().st_mtime_ns) == stamp
    assert sheet.read_bytes() == first
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (sheet, mapping)] == files
    # through the entry point that counts: no render, the same sheet
    assert _sheet(out, sheet) == []
    assert sheet.read_bytes() == first
    # a source that changed (its macro gone): rendered again, and the sheet shows the change
    write_svs(srcs[1], size=(512, 384), levels=1, with_macro=False)
    assert _sheet(out, sheet) == [srcs[1]]
    assert sheet.read_bytes().count(b"SOURCE macro") == 2
    # only touched (mtime), or replaced by a copy with the same size and mtime (another inode)
    os.utime(srcs[0], ns=(srcs[0].stat().st_atime_ns, srcs[0].stat().st_mtime_ns + 1_000_000))
    assert _sheet(out, sheet) == [srcs[0]]
    shutil.copy2(srcs[2], tmp_path / "copy")
    os.replace(tmp_path / "copy", srcs[2])
    assert _sheet(out, sheet) == [srcs[2]]
    assert _sheet(out, sheet) == []


def test_the_cache_is_private_outside_out_and_never_part_of_the_record(tmp_path, cli):
    srcs, out, sheet = _job(tmp_path, cli)
    cache = cache_path(sheet)
    assert cache.parent == sheet.parent and not record.is_inside(cache, out)
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    with sqlite3.connect(cache) as db:
        rows = db.execute(f"select key, data from {TABLE}").fetchall()
    assert sorted(bytes(k) for k, _d in rows) == sorted(b"source:" + os.fsencode(s) for s in srcs)
    label_uris = [u for _k, d in rows for u in json.loads(d)["images"]]
    assert label_uris and all(u[0] in ("label", "macro") for u in label_uris)
    # OUT, its certificate and the record's (shareable) cache know nothing of it
    assert record.unlisted_files(out) == []
    assert cli("certify", "--check", out)[0] == 0
    names = {p.name for p in out.rglob("*")}
    assert not any(n.endswith(".images.sqlite") for n in names)
    cert = (out / record.CERT_JSON).read_text()
    assert cache.name not in cert and "sheet_images" not in cert
    shareable = (tmp_path / "out.wsianon-record.sqlite").read_bytes()
    assert all(u[1].encode() not in shareable for u in label_uris)  # the sources' label and macro renders
    # made readable to others by hand (the cache, the sheet): private again after the next sheet,
    # though its content is the same; the record still confirmed
    os.chmod(cache, 0o644)
    os.chmod(sheet, 0o644)
    assert _sheet(out, sheet) == []
    assert oct(cache.stat().st_mode & 0o777) == "0o600" and oct(sheet.stat().st_mode & 0o777) == "0o600"
    assert cli("certify", "--check", out)[0] == 0 and record.unlisted_files(out) == []
    # certify --review-sheet elsewhere: its own cache beside it (rendered once), also 0600
    other = tmp_path / "private" / "sheet.html"
    assert cli("certify", out, "--review-sheet", other)[0] == 0
    assert oct(cache_path(other).stat().st_mode & 0o777) == "0o600"
    assert other.read_bytes() == sheet.read_bytes()
    assert _sheet(out, other) == []


def test_deleting_the_cache_costs_a_render_and_changes_nothing(tmp_path, cli):
    srcs, out, sheet = _job(tmp_path, cli)
    first = sheet.read_bytes()
    cache_path(sheet).unlink()
    assert sorted(_sheet(out, sheet)) == sorted(srcs)
    assert sheet.read_bytes() == first
    assert _sheet(out, sheet) == []
    # a source the sheet no longer shows (its mapping row gone) leaves the cache too
    mapping = tmp_path / "out.mapping.csv"
    lines = mapping.read_text().splitlines(keepends=True)
    mapping.write_text("".join(line for line in lines if srcs[0].name not in line))
    assert _sheet(out, sheet) == []
    with sqlite3.connect(cache_path(sheet)) as db:
        keys = {bytes(k) for (k,) in db.execute(f"select key from {TABLE}")}
    assert keys == {b"source:" + os.fsencode(s) for s in srcs[1:]}


def test_a_file_in_the_caches_place_is_never_written(tmp_path, cli):
    """The cache's name beside a sheet given by hand may be taken: another file, a job manifest,
    a link. The sheet is written (everything rendered), that file is left as it was."""
    srcs, out, sheet = _job(tmp_path, cli, n=1)
    manifest = tmp_path / "out.wsianon-job.sqlite"
    for i, make in enumerate(
        (
            lambda p: p.write_bytes(b"not a cache\n"),
            lambda p: p.write_bytes(b""),
            lambda p: shutil.copy(manifest, p),
            lambda p: p.symlink_to(manifest),
        )
    ):
        other = tmp_path / f"s{i}" / "sheet.html"
        other.parent.mkdir()
        make(cache_path(other))
        before = cache_path(other).read_bytes()
        assert _sheet(out, other) == srcs and _sheet(out, other) == srcs  # not cached
        assert cache_path(other).read_bytes() == before
        assert other.read_bytes() == sheet.read_bytes()
    assert (tmp_path / "s3" / "sheet.html.images.sqlite").is_symlink()


def test_an_mrxs_source_is_rendered_again_when_its_data_folder_changes(tmp_path):
    from wsianon.pipeline.sheetcache import SheetImages

    src = make_mrxs(tmp_path / "in", levels=2, images=2).mrxs
    files = source_files(src)
    assert files[0] == src and len(files) > 2 and all(src.with_suffix("") in f.parents for f in files[1:])
    sheet, calls = tmp_path / "sheet.html", []

    def render() -> dict:
        calls.append(src)
        return record._source_images(src)

    def sheet_run() -> dict:
        with SheetImages(sheet, tmp_path / "out") as cache:
            return cache.render(b"source:mrxs", cache.source_signature(src), render)

    imgs = sheet_run()
    assert "label" in [k for k, _u in imgs["images"]] and len(calls) == 1
    assert sheet_run() == imgs and len(calls) == 1
    data = files[-1]  # a data file of the slide's folder (the .mrxs itself unchanged)
    os.utime(data, ns=(data.stat().st_atime_ns, data.stat().st_mtime_ns + 1_000_000))
    assert sheet_run() == imgs and len(calls) == 2


def test_a_dicom_sources_folder_is_its_signature_walked_once_per_sheet(tmp_path):
    """A DICOM source's series is grouped from its folder: any file there (below it too) changing
    renders it again; the folder is walked once per sheet however many series it holds."""
    from wsianon.pipeline.sheetcache import SheetImages

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.dcm", "b.dcm", "sub/c.dcm", "notes.txt"):
        (folder / name).write_bytes(b"x" * 10)
    a, b = folder / "a.dcm", folder / "b.dcm"
    assert set(source_files(a)) == {folder / n for n in ("a.dcm", "b.dcm", "sub/c.dcm", "notes.txt")}
    with SheetImages(tmp_path / "sheet.html") as cache:
        first = cache.source_signature(a)
        (folder / "sub" / "c.dcm").write_bytes(b"y" * 11)
        assert cache.source_signature(b) == first  # the same sheet: walked once
    with SheetImages(tmp_path / "sheet.html") as cache:
        assert cache.source_signature(a) != first  # the next sheet sees the change
        assert cache.source_signature(tmp_path / "in" / "notes.txt") != cache.source_signature(a)
