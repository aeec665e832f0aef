"""The set-up contract: a Python >= 3.12 is found robustly, or a clear message says there is none."""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import REPO

SCRIPT = REPO / "tools" / "find-python.sh"


def _run(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)


def test_unselected_pyenv_shim_is_skipped(tmp_path):
    """A python3.12 on PATH that fails (pyenv's shim when 3.12 is not selected) is skipped."""
    shim_dir = tmp_path / "shims"
    shim_dir.mkdir()
    for name in ("python3.12", "python3"):
        shim = shim_dir / name
        shim.write_text('#!/bin/sh\necho "pyenv: $0: command not found" >&2\nexit 127\n')
        shim.chmod(0o755)
    # a fake pyenv root whose 3.12 is a real interpreter (the one running these tests)
    import sys

    root = tmp_path / "pyenv"
    (root / "versions" / "3.12.9" / "bin").mkdir(parents=True)
    (root / "versions" / "3.12.9" / "bin" / "python3").symlink_to(sys.executable)
    env = {"PATH": f"{shim_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "PYENV_ROOT": str(root)}
    res = _run(env)
    if res.returncode == 0 and not res.stdout.startswith(str(root)):
        pytest.skip(f"this machine has a system Python >= 3.12 at {res.stdout.strip()}, found before pyenv")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(root / "versions" / "3.12.9" / "bin" / "python3")


def test_clear_message_when_there_is_none(tmp_path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "nope")}
    # bash itself must still be reachable: call it by absolute path, PATH has no python
    res = subprocess.run(["/bin/bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)
    found_system = [p for p in ("/usr/local/bin", "/usr/bin") for v in range(12, 20) if os.path.exists(f"{p}/python3.{v}")]
    if found_system:
        pytest.skip(f"this machine has a system Python >= 3.12 ({found_system[0]})")
    assert res.returncode == 1
    assert "no Python >= 3.12 found" in res.stderr


def test_ci_entry_calls_make_test():
    text = (REPO / ".ci" / "run").read_text()
    assert "make test" in text
    assert os.access(REPO / ".ci" / "run", os.X_OK)
    mk = (REPO / "Makefile").read_text()
    assert "find-python.sh" in mk and "ensure-system-deps.sh" in mk
