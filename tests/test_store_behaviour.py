"""One ExecutionStore behaviour suite, run against the in-memory and the PostgreSQL store."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from lg_deploy.db.pool import open_pool
from lg_deploy.errors import ExecutionExists, ExecutionNotFound, InvalidTransition
from lg_deploy.models import ExecutionState, ExecutionStatus, can_transition, utcnow
from lg_deploy.store import InMemoryExecutionStore, PostgresExecutionStore
from lg_deploy.store.protocol import ExecutionStore
from tests.support.factories import COMPLETED, FAILED, QUEUED, RUNNING, bring_to, make_state, moved

FINALS = (COMPLETED, FAILED)
CLOCK_SLACK = timedelta(seconds=5)
ALL_PAIRS = list(itertools.product(ExecutionStatus, repeat=2))
INVALID_PAIRS = [(old, new) for old, new in ALL_PAIRS if not can_transition(old, new)]


def assert_aware(state: ExecutionState) -> None:
    """Every datetime of `state` that is set carries a UTC offset."""
    for name in ExecutionState.model_fields:
        value = getattr(state, name)
        if isinstance(value, datetime):
            assert value.utcoffset() is not None, name


@pytest.mark.req("LLD-4.1", "LLD-3.1", "LLD-4.2", "LLD-4.3")
async def test_create_returns_the_stored_fresh_state(store: ExecutionStore) -> None:
    """create returns the state as stored: QUEUED, attempts 0, clocks set by the store."""
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    wanted = make_state(
        input={"ticket": 42}, priority=7, max_attempts=5, request_id="req-1", created_at=long_ago
    )
    before = utcnow()
    stored = await store.create(wanted)
    assert (stored.status, stored.attempts) == (QUEUED, 0)
    assert stored.created_at == stored.updated_at
    assert before - CLOCK_SLACK <= stored.created_at <= utcnow() + CLOCK_SLACK
    assert (stored.execution_id, stored.graph_id, stored.input) == (
        wanted.execution_id,
        "echo",
        {"ticket": 42},
    )
    assert (stored.priority, stored.max_attempts, stored.request_id) == (7, 5, "req-1")
    assert stored.started_at is stored.finished_at is stored.worker_id is None


@pytest.mark.req("LLD-4.1", "LLD-4.2", "LLD-4.3")
async def test_get_returns_what_was_stored_and_none_for_unknown(store: ExecutionStore) -> None:
    """get returns a state equal to the stored one, and None for an id never created."""
    stored = await store.create(make_state())
    assert await store.get(stored.execution_id) == stored
    assert await store.get(make_state().execution_id) is None


@pytest.mark.req("LLD-4.1", "LLD-4.2", "LLD-4.3")
async def test_create_of_a_duplicate_id_raises_execution_exists(store: ExecutionStore) -> None:
    """A second create with an existing id raises ExecutionExists and keeps the first row."""
    first = await store.create(make_state(input={"which": "first"}))
    with pytest.raises(ExecutionExists):
        await store.create(make_state(execution_id=first.execution_id, input={"which": "second"}))
    assert await store.get(first.execution_id) == first


@pytest.mark.req("LLD-4.1", "LLD-4.2", "LLD-4.3", "LLD-3.2")
@pytest.mark.parametrize(
    "fields",
    [
        {"status": RUNNING, "worker_id": "w", "lease_expires_at": datetime(2030, 1, 1, tzinfo=UTC)},
        {"status": COMPLETED},
        {"status": FAILED},
        {"attempts": 1},
        {"output": {"x": 1}},
        {"error": "stale"},
        {"worker_id": "w"},
        {"started_at": datetime(2030, 1, 1, tzinfo=UTC)},
        {"finished_at": datetime(2030, 1, 1, tzinfo=UTC)},
    ],
    ids=lambda fields: "+".join(fields),
)
async def test_create_of_a_non_fresh_state_is_refused(
    store: ExecutionStore, fields: dict[str, Any]
) -> None:
    """create refuses a state that is not fresh (status, attempts, claim, output, error, times)."""
    state = make_state(**fields)
    with pytest.raises(InvalidTransition):
        await store.create(state)
    assert await store.get(state.execution_id) is None


@pytest.mark.req("LLD-4.1", "LLD-4.2", "LLD-4.3", "LLD-3.2")
async def test_guarded_updates_apply_and_keep_the_clocks(store: ExecutionStore) -> None:
    """A guarded update applies; the store stamps updated_at, started_at, finished_at, lease."""
    created = await store.create(make_state())
    running = await store.update(moved(created, RUNNING), expected_status=QUEUED)
    assert (running.status, running.worker_id, running.attempts) == (RUNNING, "worker-a", 1)
    assert running.updated_at > created.updated_at
    assert running.started_at is not None
    assert running.finished_at is None
    assert running.lease_expires_at is not None
    requeued = await store.update(moved(running, QUEUED, error="retry"), expected_status=RUNNING)
    assert (requeued.status, requeued.error, requeued.lease_expires_at) == (QUEUED, "retry", None)
    assert requeued.updated_at > running.updated_at
    again = await store.update(moved(requeued, RUNNING), expected_status=QUEUED)
    assert again.attempts == 2
    assert again.started_at is not None
    assert again.started_at > running.started_at
    done = await store.update(moved(again, COMPLETED), expected_status=RUNNING)
    assert (done.status, done.output, done.lease_expires_at) == (COMPLETED, {"done": True}, None)
    assert done.finished_at is not None
    assert done.finished_at >= done.started_at
    assert await store.get(done.execution_id) == done


@pytest.mark.req("LLD-4.1", "LLD-4.2", "LLD-4.3")
async def test_update_with_a_wrong_expected_status_changes_nothing(store: ExecutionStore) -> None:
    """An update naming a status the row is not in raises InvalidTransition and changes nothing."""
    queued = await store.create(make_state())
    with pytest.raises(InvalidTransition):
        await store.update(moved(queued, FAILED), expected_status=RUNNING)
    running = await store.update(moved(queued, RUNNING), expected_status=QUEUED)
    with pytest.raises(InvalidTransition):
        await store.update(moved(running, RUNNING, worker_id="worker-b"), expected_status=QUEUED)
    assert await store.get(queued.execution_id) == running


@pytest.mark.req("LLD-4.1", "LLD-4.2", "LLD-4.3")
async def test_update_of_an_unknown_id_raises_not_found(store: ExecutionStore) -> None:
    """update of an id that was never created raises ExecutionNotFound and creates nothing."""
    ghost = make_state()
    with pytest.raises(ExecutionNotFound):
        await store.update(moved(ghost, RUNNING), expected_status=QUEUED)
    assert await store.get(ghost.execution_id) is None


@pytest.mark.req("LLD-4.1", "LLD-3.2", "LLD-4.2", "LLD-4.3")
@pytest.mark.parametrize(("old", "new"), INVALID_PAIRS, ids=lambda s: str(s))
async def test_every_invalid_transition_is_refused(
    store: ExecutionStore, old: ExecutionStatus, new: ExecutionStatus
) -> None:
    """Every pair can_transition rejects raises InvalidTransition; the row is unchanged."""
    stored = await bring_to(store, old)
    with pytest.raises(InvalidTransition):
        await store.update(moved(stored, new), expected_status=old)
    assert await store.get(stored.execution_id) == stored


@pytest.mark.req("LLD-4.1", "LLD-3.2", "LLD-4.2", "LLD-4.3")
@pytest.mark.parametrize("final", FINALS)
async def test_final_states_refuse_every_update(
    store: ExecutionStore, final: ExecutionStatus
) -> None:
    """A COMPLETED or FAILED row refuses every update, whatever status the caller expects."""
    stored = await bring_to(store, final)
    for expected, new in ALL_PAIRS:
        with pytest.raises(InvalidTransition):
            await store.update(moved(stored, new), expected_status=expected)
    assert await store.get(stored.execution_id) == stored


@pytest.mark.req("LLD-4.1", "LLD-4.2", "LLD-4.3", "LLD-10")
async def test_fencing_only_the_owning_attempt_leaves_running(store: ExecutionStore) -> None:
    """A RUNNING row of worker A attempt 1 refuses completion by B or by attempt 2, not by A/1."""
    running = await bring_to(store, RUNNING)
    assert (running.worker_id, running.attempts) == ("worker-a", 1)
    for impostor in ({"worker_id": "worker-b"}, {"attempts": 2}):
        with pytest.raises(InvalidTransition):
            await store.update(moved(running, COMPLETED, **impostor), expected_status=RUNNING)
        assert await store.get(running.execution_id) == running
    done = await store.update(moved(running, COMPLETED), expected_status=RUNNING)
    assert done.status == COMPLETED


@pytest.mark.req("LLD-4.1", "LLD-3.1", "LLD-4.2", "LLD-4.3")
async def test_update_changes_only_the_mutable_fields(store: ExecutionStore) -> None:
    """update ignores identity, input, request data and the clocks of the state it is given."""
    created = await store.create(make_state(input={"a": 1}, request_id="r1", idempotency_key="k1"))
    odd_time = datetime(2001, 1, 1, tzinfo=UTC)
    tampered = moved(
        created,
        RUNNING,
        graph_id="other",
        input={"a": 2},
        request_id="r2",
        idempotency_key="k2",
        created_at=odd_time,
        updated_at=odd_time,
        finished_at=odd_time,
        started_at=odd_time,
        priority=9,
    )
    running = await store.update(tampered, expected_status=QUEUED)
    kept = ("graph_id", "input", "request_id", "idempotency_key", "created_at")
    assert {name: getattr(running, name) for name in kept} == {
        name: getattr(created, name) for name in kept
    }
    assert running.finished_at is None
    assert running.started_at != odd_time
    assert running.updated_at != odd_time
    assert running.priority == 9
    assert await store.get(created.execution_id) == running


@pytest.mark.req("LLD-4.1", "LLD-4.2", "LLD-4.3", "LLD-10")
async def test_concurrent_claims_of_one_row_have_exactly_one_winner(
    store: ExecutionStore,
) -> None:
    """Ten concurrent QUEUED->RUNNING updates of one row: one wins, nine get InvalidTransition."""
    created = await store.create(make_state())
    attempts = [moved(created, RUNNING, worker_id=f"w{n}") for n in range(10)]
    results = await asyncio.gather(
        *(store.update(state, expected_status=QUEUED) for state in attempts),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, ExecutionState)]
    assert len(winners) == 1
    assert all(isinstance(r, InvalidTransition) for r in results if r not in winners)
    assert await store.get(created.execution_id) == winners[0]
    assert winners[0].attempts == 1


@pytest.mark.req("LLD-4.1", "LLD-3.1", "LLD-4.2", "LLD-4.3")
async def test_datetimes_are_timezone_aware(store: ExecutionStore) -> None:
    """Every datetime a store returns, after create and each transition, is timezone-aware."""
    created = await store.create(make_state())
    running = await store.update(moved(created, RUNNING), expected_status=QUEUED)
    failed = await store.update(moved(running, FAILED), expected_status=RUNNING)
    for state in (created, running, failed, await store.get(created.execution_id)):
        assert state is not None
        assert_aware(state)


@pytest.mark.req("LLD-4.1", "LLD-3.1", "LLD-4.2", "LLD-4.3")
async def test_run_at_is_kept_when_given_and_now_by_default(store: ExecutionStore) -> None:
    """An explicit run_at is stored as given; without one run_at is the creation time."""
    later = utcnow().replace(microsecond=0) + timedelta(hours=1)
    scheduled = await store.create(make_state(run_at=later))
    assert scheduled.run_at == later
    fetched = await store.get(scheduled.execution_id)
    assert fetched is not None
    assert fetched.run_at == later
    state = make_state()
    await asyncio.sleep(0.01)  # the state's own default run_at is now in the past
    plain = await store.create(state)
    assert abs(plain.run_at - plain.created_at) < timedelta(milliseconds=5)
    assert plain.run_at > state.run_at


@pytest.mark.req("LLD-4.1", "LLD-3.1", "LLD-4.2", "LLD-4.3")
async def test_a_naive_datetime_is_never_stored_naive(store: ExecutionStore) -> None:
    """A naive run_at is refused by ExecutionState or stored timezone-aware, never kept naive."""
    try:
        state = make_state(run_at=datetime(2030, 1, 1))
    except pydantic.ValidationError:
        return
    stored = await store.create(state)
    assert_aware(stored)


async def apply_targets(
    store: ExecutionStore, targets: list[ExecutionStatus]
) -> tuple[str, list[tuple[ExecutionStatus, ExecutionStatus]]]:
    """Ask for each target in turn; exactly the changes can_transition allows are accepted."""
    current = await store.create(make_state(max_attempts=100))
    accepted: list[tuple[ExecutionStatus, ExecutionStatus]] = []
    for target in targets:
        wanted = moved(current, target)
        if not can_transition(current.status, target):
            with pytest.raises(InvalidTransition):
                await store.update(wanted, expected_status=current.status)
            continue
        updated = await store.update(wanted, expected_status=current.status)
        assert updated.status == target
        accepted.append((current.status, target))
        current = updated
    assert await store.get(current.execution_id) == current
    return current.execution_id, accepted


async def status_history(pool: AsyncConnectionPool[Any], execution_id: str) -> list[Any]:
    """(from_status, to_status) of every event of the execution, in order."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT from_status, to_status FROM lg_deploy.execution_events"
            " WHERE execution_id = %s ORDER BY event_id",
            (execution_id,),
        )
        return [tuple(row) for row in await cursor.fetchall()]


@pytest.mark.req("LLD-4.1", "LLD-11", "LLD-3.2", "LLD-4.2", "LLD-4.3")
@pytest.mark.parametrize("kind", ["memory", "postgres"])
def test_random_transition_sequences_follow_the_lifecycle(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """Any sequence of requested statuses yields only lifecycle transitions, deterministically."""
    db_url = request.getfixturevalue("db_url") if kind == "postgres" else None
    with asyncio.Runner() as runner:
        pool = runner.run(open_pool(db_url, max_size=2)) if db_url else None
        store: ExecutionStore = PostgresExecutionStore(pool) if pool else InMemoryExecutionStore()

        @settings(max_examples=30, deadline=None, derandomize=True, database=None)
        @given(st.lists(st.sampled_from(list(ExecutionStatus)), max_size=10))
        def check(targets: list[ExecutionStatus]) -> None:
            execution_id, accepted = runner.run(apply_targets(store, targets))
            assert all(can_transition(old, new) for old, new in accepted)
            if pool is not None:
                changes = [(old, new) for old, new in accepted if old != new]
                history = runner.run(status_history(pool, execution_id))
                assert history == [(None, QUEUED), *changes]

        try:
            check()
        finally:
            if pool is not None:
                runner.run(pool.close())
