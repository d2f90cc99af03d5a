"""Leases: renewal fenced by worker and attempt, recovery of expired leases, and their timing."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from lg_deploy.errors import LgDeployError
from lg_deploy.graphs import GraphRegistry
from lg_deploy.models import (
    ExecutionEvent,
    ExecutionState,
    ExecutionStatus,
    Finish,
    LeaseRenewal,
    utcnow,
)
from lg_deploy.settings import load_settings
from lg_deploy.store.protocol import ExecutionStore
from lg_deploy.worker import ExecutionWorker, GraphRunner
from tests.support.backends import Backend, make_worker
from tests.support.factories import make_state
from tests.support.graphs import Gate
from tests.support.processes import Workers
from tests.support.waiting import wait_until, wait_until_async

Q, R, C, F = (ExecutionStatus(s) for s in ("QUEUED", "RUNNING", "COMPLETED", "FAILED"))
LEASE_SECONDS = 1.2
RECOVERY_SECONDS = 0.3


def pg_worker(
    backend: Backend, graphs: GraphRunner, name: str, store: Any = None, **options: Any
) -> ExecutionWorker:
    """A worker on the Postgres backend with short leases (its claims lease as long)."""
    assert backend.pool is not None
    worker = make_worker(
        store or backend.store,
        graphs,
        worker_id=name,
        pool=backend.pool,
        concurrency=options.pop("concurrency", 1),
        lease_seconds=LEASE_SECONDS,
        recovery_interval_seconds=RECOVERY_SECONDS,
        **options,
    )
    backend.workers.append(worker)
    return worker


async def run_as(
    store: ExecutionStore, execution_id: str, worker_id: str, lease_seconds: float = 60.0
) -> ExecutionState:
    """Claim a QUEUED execution for `worker_id` through the guarded update (next attempt)."""
    state = await store.get(execution_id)
    assert state is not None
    running = state.evolve(
        status=R,
        attempts=state.attempts + 1,
        worker_id=worker_id,
        lease_expires_at=utcnow() + timedelta(seconds=lease_seconds),
    )
    return await store.update(running, expected_status=Q)


async def new_id(store: ExecutionStore, **fields: Any) -> str:
    """A fresh QUEUED execution's id."""
    return (await store.create(make_state(**fields))).execution_id


async def lease_of(store: ExecutionStore, execution_id: str) -> datetime | None:
    """The execution's lease expiry as stored."""
    state = await store.get(execution_id)
    assert state is not None
    return state.lease_expires_at


def path(events: list[ExecutionEvent]) -> list[tuple[str | None, str, str | None, int]]:
    """Each event as (from, to, worker, attempt)."""
    return [(e.from_status, e.to_status, e.worker_id, e.attempt) for e in events]


@pytest.mark.req("DUR-LEASE", "DUR-FENCE")
async def test_renewal_extends_only_leases_held_by_that_worker_and_attempt(
    backend: Backend,
) -> None:
    """renew_leases renews many at once, fenced: stale attempts and other workers get nothing."""
    store = backend.store
    a, b, c = [await new_id(store) for _ in range(3)]
    await run_as(store, a, "w1", lease_seconds=5)
    await run_as(store, b, "w1", lease_seconds=5)
    await run_as(store, c, "w2", lease_seconds=5)
    before = {i: await lease_of(store, i) for i in (a, b, c)}
    unknown = str(uuid.uuid4())
    renewal = await store.renew_leases("w1", {a: 1, b: 1, c: 1, unknown: 1}, 60)
    assert renewal == LeaseRenewal(held=frozenset({a, b}), cancel_requested=frozenset())
    for renewed in (a, b):
        lease = await lease_of(store, renewed)
        assert lease is not None
        assert lease > utcnow() + timedelta(seconds=50) > before[renewed]  # type: ignore[operator]
    assert await lease_of(store, c) == before[c]
    assert (await store.renew_leases("w2", {a: 1, b: 1}, 60)).held == frozenset()
    stale = await store.get(a)
    assert stale is not None
    await store.update(stale.evolve(status=Q, error="retry"), expected_status=R)
    await run_as(store, a, "w1", lease_seconds=5)
    lease_now = await lease_of(store, a)
    assert (await store.renew_leases("w1", {a: 1}, 600)).held == frozenset(), "stale attempt"
    assert await lease_of(store, a) == lease_now
    assert (await store.renew_leases("w1", {a: 2}, 600)).held == frozenset({a})


@pytest.mark.req("DUR-LEASE", "DUR-CANCEL")
async def test_renewal_reports_executions_asked_to_stop(backend: Backend) -> None:
    """A renewal names the held executions asked to stop, and still holds them."""
    store = backend.store
    a, b = [await new_id(store) for _ in range(2)]
    await run_as(store, a, "w1")
    await run_as(store, b, "w1")
    marked = await store.request_cancel(b)
    assert (marked.status, marked.cancel_requested_at is not None) == (R, True)
    renewal = await store.renew_leases("w1", {a: 1, b: 1}, 30)
    assert renewal == LeaseRenewal(held=frozenset({a, b}), cancel_requested=frozenset({b}))


@pytest.mark.req("DUR-LEASE")
async def test_recovery_requeues_or_fails_expired_leases_at_the_given_time(
    backend: Backend,
) -> None:
    """recover_expired(now): expired RUNNING rows become QUEUED or FAILED, with the reason."""
    store = backend.store
    again = await new_id(store)
    last = await new_id(store, max_attempts=1)
    alive = await new_id(store)
    cancelled = await new_id(store)
    for execution_id in (again, last, cancelled):
        await run_as(store, execution_id, "w1", lease_seconds=5)
    await run_as(store, alive, "w1", lease_seconds=600)
    await store.request_cancel(cancelled)
    assert await store.recover_expired(now=utcnow() + timedelta(seconds=1)) == []
    recovered = await store.recover_expired(now=utcnow() + timedelta(seconds=30))
    assert dict(recovered) == {again: Q, last: F, cancelled: F}
    reason = "lease expired: worker w1 stopped renewing attempt 1 of"
    expected = {
        again: (Q, f"{reason} 3"),
        last: (F, f"{reason} 1; no attempts left"),
        cancelled: (F, "cancelled"),
    }
    for execution_id, (status, error) in expected.items():
        state = await store.get(execution_id)
        assert state is not None
        assert (state.status, state.error, state.lease_expires_at) == (status, error, None)
        final_event = (await store.events(execution_id))[-1]
        assert (final_event.from_status, final_event.to_status) == (R, status)
        assert (final_event.error, final_event.attempt, final_event.worker_id) == (error, 1, "w1")
    still = await store.get(alive)
    assert still is not None
    assert (still.status, still.worker_id) == (R, "w1")


@pytest.mark.req("DUR-LEASE")
async def test_recovery_and_renewal_use_the_database_clock(
    pg_backend: Backend, sql: psycopg.Connection[Any]
) -> None:
    """With now=None a lease set 1 s in the past by SQL is recovered; renewal sets now() + lease."""
    store = pg_backend.store
    past, future = await new_id(store), await new_id(store)
    await run_as(store, past, "w1")
    await run_as(store, future, "w1")
    sql.execute(
        "UPDATE lg_deploy.executions SET lease_expires_at = now() - interval '1 second'"
        " WHERE execution_id = %s",
        (past,),
    )
    assert await store.recover_expired() == [(past, Q)]
    await store.renew_leases("w1", {future: 1}, 42)
    row = sql.execute(
        "SELECT extract(epoch FROM lease_expires_at - now()) FROM lg_deploy.executions"
        " WHERE execution_id = %s",
        (future,),
    ).fetchone()
    assert row is not None
    assert 40 < float(row[0]) <= 42


class RenewCounter:
    """Wraps a store and records the `held` argument of every renew_leases call."""

    def __init__(self, inner: ExecutionStore) -> None:
        self.inner = inner
        self.calls: list[dict[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def renew_leases(
        self, worker_id: str, held: dict[str, int], lease_seconds: float
    ) -> LeaseRenewal:
        """Record the call, then renew."""
        self.calls.append(dict(held))
        return await self.inner.renew_leases(worker_id, held, lease_seconds)


@pytest.mark.req("DUR-LEASE")
async def test_worker_keeps_long_executions_alive_with_one_renewal_per_beat(
    pg_backend: Backend, registry: GraphRegistry
) -> None:
    """Three 60 s runs stay RUNNING past 3 lease lengths, renewed together; a peer recovers none."""
    counter = RenewCounter(pg_backend.store)
    holder = pg_worker(pg_backend, registry, "holder", store=counter, concurrency=3)
    peer = pg_worker(pg_backend, registry, "peer")
    await holder.start()
    ids = [
        await new_id(pg_backend.store, graph_id="sleep", input={"seconds": 60}) for _ in range(3)
    ]
    holder.wake()
    await wait_until_async(lambda: len(holder.running_ids) == 3)
    await peer.start()
    leases: list[datetime] = []
    started = time.monotonic()
    while time.monotonic() - started < 3 * LEASE_SECONDS:
        states = [await pg_backend.store.get(i) for i in ids]
        held = [(s.status, s.worker_id, s.attempts) for s in states if s is not None]
        assert held == [(R, "holder", 1)] * 3
        lease = await lease_of(pg_backend.store, ids[0])
        assert lease is not None
        leases.append(lease)
        await asyncio.sleep(RECOVERY_SECONDS)
    assert leases == sorted(leases)
    assert leases[-1] - leases[0] > timedelta(seconds=2 * LEASE_SECONDS)
    full = [call for call in counter.calls if set(call) == set(ids)]
    assert len(full) >= 6
    assert len(counter.calls) <= len(full) + 3, "leases renewed one execution at a time"
    for execution_id in ids:
        assert [e.to_status for e in await pg_backend.store.events(execution_id)] == [Q, R]


@pytest.mark.req("DUR-FENCE", "DUR-LEASE")
@pytest.mark.parametrize("zombie", ["renewal-notices", "late-outcome-refused"])
async def test_worker_that_lost_its_lease_never_overwrites_the_next_attempt(
    pg_backend: Backend, zombie: str
) -> None:
    """A stalled worker's execution goes to a peer; the stalled one stops or is refused."""
    first, second = Gate("first"), Gate("second")
    stalled = pg_worker(pg_backend, first, "stalled")
    peer = pg_worker(pg_backend, second, "peer")
    await stalled.start()
    execution_id = await new_id(pg_backend.store, graph_id="anything")
    stalled.wake()
    await wait_until_async(lambda: first.started == 1)
    await peer.start()
    await stalled.leases.stop()  # the process freezes: no more renewals

    async def taken_over() -> bool:
        state = await pg_backend.store.get(execution_id)
        return state is not None and (state.status, state.worker_id) == (R, "peer")

    await wait_until_async(taken_over, timeout=10)
    await wait_until_async(lambda: second.started == 1)  # its claim lands a moment before
    if zombie == "renewal-notices":
        stalled.leases.start()  # it wakes up; its first renewal finds the lease gone
    else:
        first.gate.set()  # its graph returns; the fenced update refuses the outcome
    await wait_until_async(lambda: stalled.running_ids == [], timeout=5)
    assert first.returned == (0 if zombie == "renewal-notices" else 1)
    state = await pg_backend.store.get(execution_id)
    assert state is not None
    assert (state.status, state.worker_id, state.attempts) == (R, "peer", 2)
    second.gate.set()
    final = await pg_backend.final(execution_id)
    assert (final.status, final.output, final.worker_id, final.attempts) == (
        C,
        {"by": "second"},
        "peer",
        2,
    )
    assert path(await pg_backend.store.events(execution_id)) == [
        (None, Q, None, 0),
        (Q, R, "stalled", 1),
        (R, Q, "stalled", 1),
        (Q, R, "peer", 2),
        (R, C, "peer", 2),
    ]


class SlowOutcomes(RenewCounter):
    """Outcomes are stored at once, but their writer hears back only when `gate` is set."""

    def __init__(self, inner: ExecutionStore) -> None:
        super().__init__(inner)
        self.gate = asyncio.Event()

    async def finish_running(
        self, worker_id: str, finishes: Sequence[Finish]
    ) -> list[ExecutionState | LgDeployError]:
        """Store, then wait for the gate before answering."""
        results = await self.inner.finish_running(worker_id, finishes)
        await self.gate.wait()
        return results


@pytest.mark.req("DUR-LEASE", "WORKER-RENEWAL-RACE")
async def test_a_renewal_racing_a_stored_outcome_stops_nothing(
    pg_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewal that finds the row already COMPLETED is no lease loss: the run's outcome stands."""
    store = SlowOutcomes(pg_backend.store)
    worker = pg_worker(pg_backend, Gate("worker"), "worker", store=store)
    worker.graphs.gate.set()  # type: ignore[attr-defined]
    await worker.start()
    execution_id = await new_id(pg_backend.store, graph_id="anything")
    worker.wake()

    async def stored() -> bool:
        state = await pg_backend.store.get(execution_id)
        return state is not None and state.status == C

    await wait_until_async(stored)
    renewals = len(store.calls)
    worker.check_cancellations()  # a renewal now: the row is COMPLETED, its writer not yet told
    await wait_until_async(lambda: len(store.calls) > renewals)
    await asyncio.sleep(0.1)  # the renewal's answer is handled
    store.gate.set()
    await wait_until_async(lambda: worker.running_ids == [])
    assert not [r.message for r in caplog.records if "lost" in r.message or "abandon" in r.message]
    assert path(await pg_backend.store.events(execution_id)) == [
        (None, Q, None, 0),
        (Q, R, "worker", 1),
        (R, C, "worker", 1),
    ]


@pytest.mark.req("DUR-LEASE")
async def test_stopped_renewals_are_recovered_within_lease_plus_interval(
    pg_backend: Backend, registry: GraphRegistry
) -> None:
    """A worker that stops renewing loses its execution to a peer after lease, within + interval."""
    dead = pg_worker(pg_backend, registry, "dead")
    peer = pg_worker(pg_backend, registry, "peer")
    await dead.start()
    execution_id = await new_id(pg_backend.store, graph_id="sleep", input={"seconds": 60})
    dead.wake()
    await wait_until_async(lambda: dead.running_ids == [execution_id])
    await peer.start()
    await dead.leases.stop()
    stopped = time.monotonic()

    async def with_peer() -> bool:
        state = await pg_backend.store.get(execution_id)
        return state is not None and state.worker_id == "peer"

    await wait_until_async(with_peer, timeout=10, interval=0.01)
    elapsed = time.monotonic() - stopped
    beat = LEASE_SECONDS / 4
    assert LEASE_SECONDS - beat - 0.1 <= elapsed <= LEASE_SECONDS + RECOVERY_SECONDS + 1.0
    errors = [e.error for e in await pg_backend.store.events(execution_id) if e.to_status == Q]
    assert errors[-1] == "lease expired: worker dead stopped renewing attempt 1 of 3"


@pytest.mark.req("DUR-LEASE")
def test_default_lease_and_recovery_interval_recover_within_15_seconds() -> None:
    """By default a dead worker's execution is recovered in 10 s lease + 2 s interval <= 15 s."""
    defaults = load_settings({})
    assert (defaults.lease_seconds, defaults.recovery_interval_seconds) == (10.0, 2.0)
    assert defaults.lease_seconds + defaults.recovery_interval_seconds <= 15


def _sleeping_run(
    sql: psycopg.Connection[Any],
) -> tuple[object, Callable[[], tuple[str, str | None, int]]]:
    """A 60 s `sleep` run inserted by SQL: its id, and a reader of (status, worker, attempts)."""
    row = sql.execute(
        "INSERT INTO lg_deploy.executions (graph_id, input)"
        " VALUES ('sleep', '{\"seconds\": 60}') RETURNING execution_id"
    ).fetchone()
    assert row is not None
    execution_id = row[0]

    def holder() -> tuple[str, str | None, int]:
        found = sql.execute(
            "SELECT status, worker_id, attempts FROM lg_deploy.executions WHERE execution_id = %s",
            (execution_id,),
        ).fetchone()
        assert found is not None
        return found[0], found[1], found[2]

    return execution_id, holder


def _requeue_reason(sql: psycopg.Connection[Any], execution_id: object) -> tuple[str] | None:
    row = sql.execute(
        "SELECT error FROM lg_deploy.execution_events"
        " WHERE execution_id = %s AND from_status = 'RUNNING' AND to_status = 'QUEUED'",
        (execution_id,),
    ).fetchone()
    return None if row is None else (row[0],)


@pytest.mark.req("DUR-LEASE")
def test_sigkilled_worker_process_is_recovered_within_15_seconds_by_default(
    workers: Workers, sql: psycopg.Connection[Any]
) -> None:
    """With default leases, a SIGKILLed `lg-deploy worker` loses its run to a peer in < 15 s,
    by its lease alone (as for a worker on another host: the same-host shortcut is off)."""
    alone = {"LG_DEPLOY_RECOVER_GONE_WORKERS": "false"}
    victim = workers.start(**alone)
    execution_id, holder = _sleeping_run(sql)
    wait_until(lambda: holder()[0] == "RUNNING")
    victim_id = holder()[1]
    workers.start(**alone)
    victim.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: holder()[0] == "RUNNING" and holder()[1] != victim_id, timeout=20)
    elapsed = time.monotonic() - killed
    assert 7.0 <= elapsed < 15.0, elapsed
    assert holder()[2] == 2
    error = _requeue_reason(sql, execution_id)
    assert error == (f"lease expired: worker {victim_id} stopped renewing attempt 1 of 3",)


@pytest.mark.req("DUR-GONE-WORKER")
def test_a_process_starting_on_the_host_of_a_sigkilled_worker_takes_its_run_at_once(
    workers: Workers, sql: psycopg.Connection[Any]
) -> None:
    """A worker SIGKILLed with a 300 s lease: the next worker started on the same host sees its
    process is gone and requeues its run as it starts, long before the lease would pass."""
    long_lease = {"LG_DEPLOY_LEASE_SECONDS": "300"}
    victim = workers.start(**long_lease)
    execution_id, holder = _sleeping_run(sql)
    wait_until(lambda: holder()[0] == "RUNNING")
    victim_id = holder()[1]
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    workers.start(**long_lease)
    wait_until(lambda: holder()[0] == "RUNNING" and holder()[1] != victim_id, timeout=60)
    assert holder()[2] == 2
    error = _requeue_reason(sql, execution_id)
    assert error == (f"worker {victim_id} is gone (its process ended) during attempt 1 of 3",)
    live = sql.execute(
        "SELECT count(*) FROM lg_deploy.live_workers WHERE worker_id = %s", (victim_id,)
    ).fetchone()
    assert live == (0,)
