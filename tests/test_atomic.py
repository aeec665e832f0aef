"""Outputs are durable before they are visible: Staging.commit fsyncs what the writer did not."""

from __future__ import annotations

import os

from wsianon.io import atomic, cache


def test_commit_fsyncs_unsynced_files_before_their_final_names(tmp_path, monkeypatch):
    out = tmp_path / "out"
    events: list[tuple[str, object]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", os.stat(a).st_ino))
        return real_replace(a, b)

    with atomic.Staging(out, "t") as st:
        f = st.path("WSI-x/level0.dcm")  # written like the DICOM writer does: no fsync of its own
        f.write_bytes(b"DICM" * 1000)
        ino = f.stat().st_ino
        monkeypatch.setattr(atomic.os, "fsync", fsync)
        monkeypatch.setattr(atomic.os, "replace", replace)
        st.commit()
    assert (out / "WSI-x" / "level0.dcm").read_bytes() == b"DICM" * 1000
    fsyncs = [i for i, (k, v) in enumerate(events) if k == "fsync" and v == ino]
    replaces = [i for i, (k, _) in enumerate(events) if k == "replace"]
    assert fsyncs and replaces and fsyncs[0] < replaces[0]  # data on disk before the name appears
    # and the folder entries after the renames
    assert events[-1][0] == "fsync" and events[-1][1] == out.stat().st_ino


def test_commit_does_not_fsync_again_what_the_copy_synced(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with atomic.Staging(out, "t") as st:
        f = st.path("WSI-y.svs")
        fd = os.open(f, os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"II*\x00" + b"\x00" * 100)
        os.fsync(fd)
        cache.mark_synced(fd)  # as apply_copy does after its own fsync
        os.close(fd)
        ino = f.stat().st_ino
        seen: list[int] = []
        real_fsync = os.fsync
        monkeypatch.setattr(atomic.os, "fsync", lambda fd: (seen.append(os.fstat(fd).st_ino), real_fsync(fd))[1])
        st.commit()
    assert ino not in seen and (out / "WSI-y.svs").exists()
