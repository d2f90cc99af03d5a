"""The platform group of the benchmark at tiny sizes (BENCH-SMOKE): lg-deploy driven by the
official Python SDK through every row the peers are measured on, so the group cannot rot.

`langgraph dev` and Aegra are installed into their own venvs by `scripts/bench` only (their
packages are not test dependencies); `python -m bench --quick` measures lg-deploy alone.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Alone on 2 cores the quick platform group takes about 30 s; beside a fuzzing test process
# about twice that. A smoke test proves it runs, not how fast.
BENCH_SECONDS = 180
EXPECTED = {
    "runs.wait (SDK)": [
        "1 callers runs/s",
        "4 callers p99 ms",
        "drain 1 process/s",
        "4 callers % of drain",
    ],
    "30 runs.create + join, noop": ["runs/s", "drain s", "p50 ms", "p99 ms"],
    "30 runs.create + join, sleep50": ["runs/s", "p99 ms"],
    "stream 99 tokens": ["first event ms", "first token ms", "tokens/s"],
    "SIGKILL with 5 runs in flight": ["s to last after kill"],
    "memory": ["started RSS MB", "20 threads RSS MB", "5 running RSS MB"],
}


@pytest.mark.timeout(BENCH_SECONDS + 20)
@pytest.mark.req("BENCH-SMOKE")
def test_the_platform_group_measures_every_row_on_lg_deploy(tmp_path: Path) -> None:
    """`python -m bench --quick --only platform` exits 0 with a positive number per metric, and
    every run submitted before the SIGKILL finishes after the restart: none lost."""
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "platform", "--json", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BENCH_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    results = json.loads(report.read_text())["results"]
    assert all(name.startswith("platform lg-deploy: ") for name in results), sorted(results)
    for fragment, metrics in EXPECTED.items():
        rows = [entry for name, entry in results.items() if fragment in name]
        assert len(rows) == 1, f"{fragment}: {sorted(results)}"
        for metric in metrics:
            median = rows[0]["stats"][metric]["median"]
            assert math.isfinite(median), (fragment, metric, median)
            assert median > 0, (fragment, metric, median)
    crash = next(v for k, v in results.items() if "SIGKILL" in k)["stats"]
    assert crash["lost"]["max"] == 0
    assert crash["finished"]["min"] == 5
    assert "platform lg-deploy" in done.stdout
