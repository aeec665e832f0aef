"""Run every benchmark in this folder (``make bench``). Sizes can be set with BENCH_GB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
size = os.environ.get("BENCH_GB", "2")
rc = 0
for script in sorted(here.glob("bench_*.py")):
    print(f"== {script.name}", flush=True)
    rc |= subprocess.run([sys.executable, str(script), "--size-gb", size]).returncode
sys.exit(rc)
