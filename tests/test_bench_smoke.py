"""The benchmark suite at tiny sizes (BENCH-SMOKE): it runs end to end and fills its table.

The full suite (`scripts/bench`, docs/benchmarks.md) is not part of the default test run; this
smoke run of every lg-deploy measurement is, so the suite cannot rot. The peer queues are
exercised by `scripts/bench` only (their packages are not test dependencies).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {
    "graph-only (no-op graph": ["invocations/s"],
    "graph-only (50 ms graph": ["invocations/s"],
    "drain 100 no-op, 1 process": ["executions/s", "graph-only beside/s", "% of graph-only beside"],
    "drain 100 no-op, 2 processes": [
        "executions/s",
        "graph-only beside/s",
        "% of graph-only beside",
    ],
    "raw SQL (pgbench) claim+complete, 1 per": ["executions/s"],
    "raw SQL (pgbench) claim+complete, 32": ["executions/s"],
    "pickup: SQL INSERT": ["p50 ms", "p95 ms", "p99 ms"],
    "pickup: HTTP submit": ["p50 ms", "p95 ms", "p99 ms"],
    "HTTP POST /executions": ["lg-deploy requests/s", "bare requests/s", "ratio %"],
    "depth": ["shallow executions/s", "deep executions/s", "ratio %"],
    "concurrency": ["executions/s", "% of slots/50ms", "peak RSS MB"],
    # --quick streaming sizes (bench.streaming.QUICK): a 100-word reply, 10 clients
    "streaming: custom events": ["p50 ms", "p99 ms"],
    "streaming: 199 tokens": ["served tokens/s", "in-process tokens/s", "ratio %"],
    "streaming: 10 clients": ["events stored", "events delivered"],
}


# The quick run takes about 70 s alone on a 2-core machine; beside another test process that
# fuzzes or runs chaos it has taken 110 s. A smoke test proves it runs, not how fast.
BENCH_SECONDS = 220


def run_bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m ARGS` from the checkout; fails the test unless it exits 0. Past BENCH_SECONDS
    its whole process group is killed: the workers and servers it started too, not only it."""
    with subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as child:
        try:
            stdout, stderr = child.communicate(timeout=BENCH_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            raise
    assert child.returncode == 0, stdout[-3000:] + stderr[-5000:]
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


@pytest.mark.timeout(BENCH_SECONDS + 20)
@pytest.mark.req("BENCH-SMOKE")
def test_bench_quick_run_produces_a_number_for_every_measurement(tmp_path: Path) -> None:
    """`python -m bench --quick --skip peers,platform` exits 0 and reports a positive number per
    metric (the platform group has its own smoke test, test_bench_platform_smoke.py)."""
    report = tmp_path / "bench.json"
    done = run_bench("bench", "--quick", "--skip", "peers,platform", "--json", str(report))
    results = json.loads(report.read_text())["results"]
    for prefix, metrics in EXPECTED.items():
        rows = [entry for name, entry in results.items() if name.startswith(prefix)]
        assert len(rows) == 1, f"{prefix}: {sorted(results)}"
        for metric in metrics:
            median = rows[0]["stats"][metric]["median"]
            assert isinstance(median, float), (prefix, metric, median)
            assert math.isfinite(median), (prefix, metric, median)
            assert median > 0, (prefix, metric, median)
    streamed = next(v for k, v in results.items() if k.startswith("streaming: 10 clients"))
    assert streamed["stats"]["lost"]["max"] == 0
    assert streamed["stats"]["duplicated"]["max"] == 0
    assert "| measurement | metric | median | min | max |" in done.stdout
    assert "## Machine" in done.stdout
    assert "## Targets" in done.stdout


@pytest.mark.req("BENCH-SMOKE")
def test_the_ab_tool_prints_each_variant_against_graph_only() -> None:
    """`python -m bench.ab` at tiny sizes: one line per variant with its share of graph-only."""
    done = run_bench(
        "bench.ab",
        "1",
        "ahead:4",
        "none:4:LG_DEPLOY_CLAIM_AHEAD=0",
        env={**os.environ, "AB_ROWS": "50", "AB_LOOP": "50"},
    )
    lines = done.stdout.splitlines()
    for name in ("ahead", "none"):
        (line,) = [line for line in lines if line.startswith(f"{name}: ")]
        assert re.search(r"/s = \d+\.\d % \(", line), line
    assert any(line.startswith("graph-only: ") for line in lines)


@pytest.mark.req("BENCH-SMOKE", "PERF-GC")
def test_the_gc_share_tool_prints_both_collector_settings() -> None:
    """`python -m bench.gc_share` at tiny sizes: a rate, a CPU share and counts per setting."""
    done = run_bench("bench.gc_share", "50", "4", "noop")
    for name in ("python's 700", "sized (default)"):
        (line,) = [line for line in done.stdout.splitlines() if line.startswith(f"{name}: ")]
        assert re.search(r"/s, collections \d+\.\d % of the worker's CPU, \[\d+, \d+, \d+\]", line)


@pytest.mark.req("BENCH-SMOKE", "FLEET-CLAIM")
def test_the_claim_cost_tool_times_two_checkouts_claims(db_url: str) -> None:
    """`python -m bench.claim_cost` at tiny sizes, this checkout against itself: two medians."""
    admin = make_conninfo(db_url, dbname="postgres")
    env = {**os.environ, "ADMIN_URL": admin, "CLAIM_COUNT": "5", "CLAIM_OTHER_ROWS": "50"}
    done = run_bench("bench.claim_cost", str(ROOT), "1", env=env)
    assert re.fullmatch(r"round 1: this \d+\.\d\d ms, other \d+\.\d\d ms\n", done.stdout)
