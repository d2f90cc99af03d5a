"""Chaos: worker kills and pauses, PostgreSQL crash-restarts and killed backends lose nothing.

Each run (tests/chaos/harness.py) inserts N `sleep` executions (0-0.3 s, seeded) with plain SQL
in 25 statements over a 15 s window, against 3 `lg-deploy worker` processes (concurrency 8,
lease 3 s, recovery every 0.5 s, poll 0.5 s, max_attempts 20), while, at seeded moments, K
workers are SIGKILLed (each replaced by a fresh process), PostgreSQL is crash-restarted M times
(`pg_ctl restart -m immediate`), J rounds terminate every lg-deploy backend, and P workers that
hold executions are SIGSTOPped for 4.5 s (longer than the lease), then SIGCONTed: their late
writes are what fencing must refuse. The checker reads only SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.cluster import Cluster
from tests.chaos.harness import ChaosPlan, negative_control_plan, run_chaos

CI_SEEDS = (11, 23, 37)
SETTLE_SECONDS = 60.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL server this module owns, so it may crash-restart it."""
    owned = Cluster()
    try:
        yield owned
    finally:
        owned.close()


@pytest.mark.timeout(240)
@pytest.mark.req("FAULT-CHAOS", "DUR-LEASE", "CARD-CLAIM")
@pytest.mark.parametrize("seed", CI_SEEDS)
def test_chaos_run_loses_nothing_and_completes_nothing_twice(
    cluster: Cluster, tmp_path: Path, seed: int
) -> None:
    """N=500, K=5, M=2, J=5, P=3: 0 lost, 0 duplicates, all final within 60 s of the last fault."""
    plan = ChaosPlan(seed=seed, settle_seconds=SETTLE_SECONDS)
    report = run_chaos(cluster, plan, tmp_path / "logs")
    figures = report.summary()
    print(f"\nchaos seed {seed}:\n{figures}")
    assert report.submitted == plan.executions, figures
    assert report.faults["kills"] == plan.kills, figures
    assert report.faults["restarts"] == plan.restarts, figures
    assert report.faults["terminations"] == plan.terminations, figures
    assert report.faults["pauses"] == plan.pauses, figures
    assert report.lost == 0, figures
    assert report.duplicate_completions == 0, figures
    assert report.terminal_after_last_fault_seconds is not None, figures
    assert report.terminal_after_last_fault_seconds <= SETTLE_SECONDS, figures
    assert report.crashed_workers == 0, figures
    assert report.failed == 0, figures
    assert report.completed == plan.executions, figures


@pytest.mark.timeout(240)
@pytest.mark.req("FAULT-NEGATIVE")
def test_checker_reports_duplicates_against_a_worker_without_fencing(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Workers whose update and lease renewal are unfenced: the checker counts duplicates > 0."""
    plan = negative_control_plan(seed=5)
    report = run_chaos(cluster, plan, tmp_path / "logs")
    figures = report.summary()
    print(f"\nnegative control:\n{figures}")
    assert report.faults["paused_held"] > 0, figures
    assert report.duplicate_completions > 0, figures
    assert report.stale_outcomes > 0, figures
