#!/usr/bin/env bash
# Print the path of a working Python >= 3.12 interpreter, or fail with a clear message.
# Order: PATH (python3.12, python3.13, python3.14, python3), then pyenv's versions, then common prefixes.
set -u
ok() { "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
for name in python3.12 python3.13 python3.14 python3; do
  p=$(command -v "$name" 2>/dev/null) || continue
  if ok "$p"; then echo "$p"; exit 0; fi   # a pyenv shim that is not selected fails here and is skipped
done
roots=()
[ -n "${PYENV_ROOT:-}" ] && roots+=("$PYENV_ROOT")
roots+=("${HOME:-/root}/.pyenv")
for root in "${roots[@]}"; do
  for p in $(ls -d "$root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V); do
    if ok "$p"; then echo "$p"; exit 0; fi
  done
done
for p in /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9] /opt/python/3.1[2-9]*/bin/python3; do
  [ -x "$p" ] && ok "$p" && { echo "$p"; exit 0; }
done
echo "error: no Python >= 3.12 found (looked on PATH and in pyenv's versions)." >&2
echo "       Install Python 3.12 (e.g. 'pyenv install 3.12' or 'apt-get install python3.12 python3.12-venv') and rerun." >&2
exit 1
