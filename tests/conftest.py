"""Shared test fixtures: real sample data (when present), key files, the CLI runner."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.helpers import sha256

REPO = Path(__file__).resolve().parent.parent
SHARED = (REPO.parent / "shared" / "testdata").resolve()
BUNDLED = REPO / "tests" / "data"


def shared(rel: str) -> Path:
    """A file of ../shared/testdata, or skip the test with the reason."""
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"real sample data not available: {p} (../shared/testdata is absent)")
    return p


def tree_hashes(root: Path) -> dict[str, str]:
    root = Path(root)
    if root.is_file():
        return {root.name: sha256(root)}
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def _isolated_key(request, tmp_path_factory, monkeypatch):
    """Every test gets its own project key (never the user's ~/.config/wsianon/key), the same in
    every run of the test (derived from its name): the keyed UIDs a test's outputs carry are then
    the same every run, so a test's own raw byte scan that finds a value's digits inside one by
    chance (about one UID in 30,000 for six digits) fails every run, not one run in thousands."""
    kdir = tmp_path_factory.mktemp("key")
    key = kdir / "key"
    key.write_text(hashlib.sha256(b"wsianon test key\0" + request.node.nodeid.encode()).hexdigest() + "\n")
    key.chmod(0o600)
    monkeypatch.setenv("WSIANON_KEY_FILE", str(key))
    import wsianon.pipeline.keys as keys

    monkeypatch.setattr(keys, "DEFAULT_KEY", kdir / "key")
    yield


@pytest.fixture
def key(tmp_path) -> Path:
    """A fresh project key file, as ``wsianon key init`` writes it."""
    from wsianon.pipeline.keys import init_key

    k = tmp_path / "job.key"
    init_key(k)
    return k


def small_svs_folder(tmp_path_factory, prefix: str, n: int) -> Path:
    """``n`` small one-level SVS slides, CASE-1.svs … (one level: wsidicom numbers the instances
    of parallel levels in the order their threads open them, which no runner controls)."""
    from tests.fixtures.svs_gen import write_svs

    d = tmp_path_factory.mktemp(prefix)
    for i in range(1, n + 1):
        write_svs(d / f"CASE-{i}.svs", levels=1, size=(768, 512))
    return d


@pytest.fixture
def cli():
    """Run the CLI in-process; returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from wsianon.cli import app

    def _run(*args: str):
        runner = CliRunner()
        res = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return res.exit_code, res.stdout, res.stderr

    return _run


def run_subprocess(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``wsianon`` as a real process (to prove no traceback reaches the user)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run(
        [sys.executable, "-m", "wsianon.cli", *[str(a) for a in args]],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=e,
        timeout=300,
    )
