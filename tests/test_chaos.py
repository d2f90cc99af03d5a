"""Chaos: worker kills and pauses, PostgreSQL crash-restarts and killed backends lose nothing.

Each run (tests/chaos/harness.py) inserts N executions with plain SQL in 25 batches over a 15 s
window: N - R `sleep` executions (0-0.3 s, seeded) and R runs of the two-step `turns` graph
(tests/chaos/graph.py, same waits) on T threads, R/T per thread at seeded places, so a thread's
runs queue behind each other. 3 `lg-deploy worker` processes (concurrency 8, lease 3 s, recovery
every 0.5 s, poll 0.5 s, max_attempts 20, retry on error after 0.5 s) run them while, at seeded
moments, K workers are SIGKILLed (each replaced by a fresh process), PostgreSQL is
crash-restarted M times (`pg_ctl restart -m immediate`), J rounds terminate every lg-deploy
backend, and P workers that hold executions are SIGSTOPped for 4.5 s (longer than the lease),
then SIGCONTed: their late writes are what fencing must refuse. S=20 of the runs record their
stream (10 thread runs, 10 `ticks` runs of 1-2.5 s), each followed by 2 clients through 2
`lg-deploy serve` processes (no graphs; A=2 of them SIGKILLed and replaced), hanging up at seeded
points and when the connection breaks, and reconnecting with Last-Event-ID until the run is
final. The checker reads SQL: besides lost and duplicate executions, for the threads it checks
from the event history that their runs never overlapped and started oldest first, that no thread
is left busy, and from the runs' outputs and the threads' values that each run's steps landed
once, in order; for the streams, that each client received every event lg_deploy.run_events
holds for its run exactly once, in order, as stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.cluster import Cluster
from tests.chaos.harness import run_chaos
from tests.chaos.plan import ChaosPlan, negative_control_plan
from tests.support.depth import is_deep

# The default run proves the claims on the first seed, `scripts/test --deep` on all three (the
# long run is `scripts/chaos`).
CI_SEEDS = (11, 23, 37)
SETTLE_SECONDS = 60.0


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One chaos seed in the default run, every seed of CI_SEEDS in the deep run."""
    if "seed" in metafunc.fixturenames:
        metafunc.parametrize("seed", CI_SEEDS if is_deep(metafunc.config) else CI_SEEDS[:1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL server this module owns, so it may crash-restart it."""
    owned = Cluster()
    try:
        yield owned
    finally:
        owned.close()


@pytest.mark.timeout(240)
@pytest.mark.req(
    "FAULT-CHAOS", "DUR-LEASE", "CARD-CLAIM", "THREAD-RUNS", "MULTITASK", "STREAM-RESUME"
)
def test_chaos_run_loses_nothing_and_completes_nothing_twice(
    cluster: Cluster, tmp_path: Path, seed: int
) -> None:
    """N=500 (R=60 on T=12 threads), K=5, M=2, J=5, P=3, A=2: 0 lost, 0 duplicates, all final
    within 60 s of the last fault; one run at a time per thread, oldest first, each run's steps
    once; S=20 streamed runs, 40 reconnecting clients: each stored event received once, in order."""
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
    assert (report.threads, report.thread_runs) == (plan.threads, plan.thread_runs), figures
    assert report.thread_runs_completed_once == plan.thread_runs, figures
    assert report.overlaps == 0, figures
    assert report.out_of_order == 0, figures
    assert report.busy_left == 0, figures
    assert (report.wrong_values, report.wrong_outputs) == (0, 0), figures
    streams = report.streams
    assert report.faults["api_kills"] == plan.api_kills, figures
    assert report.crashed_servers == 0, figures
    assert streams.streamed_runs == plan.streamed_runs, figures
    assert streams.clients == plan.streamed_runs * plan.clients_per_run, figures
    assert streams.reconnects > 0, figures
    assert streams.received_events == streams.stored_events * plan.clients_per_run, figures
    assert (streams.lost, streams.duplicated, streams.out_of_order) == (0, 0, 0), figures
    assert (streams.mismatched, streams.unfinished, streams.silent) == (0, 0, 0), figures


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
