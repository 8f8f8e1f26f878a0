"""The CPU-only provisioning benchmark keeps running as the import's code changes (benchmarks/README.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]


def test_the_cpu_benchmark_times_each_step_of_a_small_registry() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.provisioning_cpu", "--rows", "400", "--repeats", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = re.search(r"read ([\d.]+), prepare ([\d.]+), build ([\d.]+); total ([\d.]+)", done.stdout)
    assert found, done.stdout
    read, prepare, build, total = (float(x) for x in found.groups())
    assert min(read, prepare, build) > 0 and abs(read + prepare + build - total) < 0.2
