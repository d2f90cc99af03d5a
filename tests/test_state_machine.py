"""A hypothesis state machine drives PostgresExecutionStore on real PostgreSQL with a given clock.

Rules submit, claim (the named query, `now` = the simulated clock), renew, finish (with the state a
worker believes it holds, stale ones included), expire, cancel and tick the clock; a model
predicts every answer, and invariants check the rows and their history in SQL after each step.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psycopg import sql as pgsql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from pytest_postgresql.executors.noop import NoopExecutor

from lg_deploy.db.pool import open_pool
from lg_deploy.db.queries import query
from lg_deploy.errors import InvalidTransition
from lg_deploy.models import (
    ALLOWED_TRANSITIONS,
    FINAL_STATUSES,
    ExecutionState,
    ExecutionStatus,
)
from lg_deploy.store.postgres import PostgresExecutionStore
from tests.support.factories import make_state

Q, R, C, F = (ExecutionStatus(s) for s in ("QUEUED", "RUNNING", "COMPLETED", "FAILED"))
LEASE = timedelta(seconds=5)
WORKERS = st.sampled_from(["w1", "w2"])
PICK = st.integers(min_value=0, max_value=1_000_000)
# No shrinking: each example needs its own database, so shrinking would take minutes; a failure
# prints its (at most 30) steps unshrunk. The deep run (`scripts/test --deep`) tries more.
EXAMPLES = 12
DEEP_EXAMPLES = 100
MACHINE_SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


@dataclass
class Expected:
    """What the model says one execution's row holds."""

    status: ExecutionStatus
    attempts: int
    max_attempts: int
    priority: int
    run_at: datetime
    worker_id: str | None = None
    lease: datetime | None = None
    cancel: bool = False
    error: str | None = None


def lease_outcome(e: Expected) -> tuple[ExecutionStatus, str]:
    """What recover_expired must turn an expired RUNNING execution into."""
    if e.cancel:
        return F, "cancelled"
    reason = f"lease expired: worker {e.worker_id} stopped renewing attempt {e.attempts} of "
    if e.attempts < e.max_attempts:
        return Q, f"{reason}{e.max_attempts}"
    return F, f"{reason}{e.max_attempts}; no attempts left"


@settings(MACHINE_SETTINGS)
class LifecycleMachine(RuleBasedStateMachine):
    """Executions on a fresh database per run; the simulated clock only moves forward."""

    def __init__(self, server: dict[str, Any], template: str) -> None:
        super().__init__()
        self.admin_url = make_conninfo(**server, dbname="postgres")
        self.dbname = f"lgd_machine_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(
                pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    pgsql.Identifier(self.dbname), pgsql.Identifier(template)
                )
            )
        url = make_conninfo(**server, dbname=self.dbname)
        self.sql = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        self.runner = asyncio.Runner()
        self.pool = self.runner.run(open_pool(url, min_size=1, max_size=2))
        self.store = PostgresExecutionStore(self.pool)
        # A day behind the database clock: renewals (database clock) then outlast every tick, and
        # runs replay the same way whatever the real time.
        self.now: datetime = self.db_now() - timedelta(days=1)
        self.model: dict[str, Expected] = {}
        self.beliefs: list[ExecutionState] = []
        self.final_rows: dict[str, dict[str, Any]] = {}

    def teardown(self) -> None:
        """Close every connection and drop this run's database."""
        self.sql.close()
        self.runner.run(self.pool.close())
        self.runner.close()
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(
                pgsql.SQL("DROP DATABASE {} WITH (FORCE)").format(pgsql.Identifier(self.dbname))
            )

    def db_now(self) -> datetime:
        """The database clock."""
        row = self.sql.execute("SELECT now() AS now").fetchone()
        assert row is not None
        moment: datetime = row["now"]
        return moment

    def pick_id(self, pick: int) -> str:
        """One known execution id."""
        ids = sorted(self.model)
        return ids[pick % len(ids)]

    @rule(seconds=st.sampled_from([0.5, 2.0, 6.0]))
    def tick(self, seconds: float) -> None:
        """Time passes."""
        self.now += timedelta(seconds=seconds)

    @initialize(count=st.integers(min_value=2, max_value=6), claimed=st.integers(0, 3))
    def start_some(self, count: int, claimed: int) -> None:
        """Every run starts with a few due executions, some of them already claimed by w1."""
        for number in range(count):
            self.submit(delay=0, priority=number % 3 - 1, max_attempts=number % 3 + 1)
        if claimed:
            self.claim("w1", claimed)

    @rule(
        delay=st.sampled_from([0, 0, 4, 15]),
        priority=st.integers(min_value=-1, max_value=1),
        max_attempts=st.integers(min_value=1, max_value=3),
    )
    def submit(self, delay: int, priority: int, max_attempts: int) -> None:
        """A new execution, due `delay` seconds from now."""
        run_at = self.now + timedelta(seconds=delay)
        wanted = make_state(
            execution_id=str(uuid.UUID(int=len(self.model) + 1)),  # ties ordered the same each run
            run_at=run_at,
            priority=priority,
            max_attempts=max_attempts,
        )
        stored = self.runner.run(self.store.create(wanted))
        assert (stored.status, stored.run_at) == (Q, run_at)
        self.model[stored.execution_id] = Expected(Q, 0, max_attempts, priority, run_at)

    @rule(worker=WORKERS, limit=st.integers(min_value=1, max_value=3))
    def claim(self, worker: str, limit: int) -> None:
        """The claim query takes the due executions, highest priority then oldest first."""
        due = [i for i, e in self.model.items() if e.status == Q and e.run_at <= self.now]
        due.sort(key=lambda i: (-self.model[i].priority, self.model[i].run_at, i))
        params = {
            "limit": limit,
            "worker_id": worker,
            "lease_seconds": 5,
            "now": self.now,
            "graph_ids": ["echo"],
        }
        claimed = self.runner.run(self._fetch_ids(query("claim_executions"), params))
        assert sorted(claimed) == sorted(due[:limit])
        for execution_id in claimed:
            e = self.model[execution_id]
            e.status, e.attempts, e.worker_id = R, e.attempts + 1, worker
            e.lease = self.now + LEASE
            belief = self.runner.run(self.store.get(execution_id))
            assert belief is not None
            assert belief.lease_expires_at == e.lease
            self.beliefs.append(belief)

    async def _fetch_ids(self, text: Any, params: dict[str, Any]) -> list[str]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(text, params)
            return [str(row[0]) for row in await cursor.fetchall()]

    @rule(worker=WORKERS, oldest=st.booleans(), off_by_one=st.booleans())
    def renew(self, worker: str, oldest: bool, off_by_one: bool) -> None:
        """A worker renews what it believes it holds: first or last claim, or a wrong attempt."""
        mine = [b for b in self.beliefs if b.worker_id == worker]
        held = {b.execution_id: b.attempts for b in (mine[::-1] if oldest else mine)}
        if off_by_one:
            held = {i: attempt - 1 if attempt > 1 else attempt + 1 for i, attempt in held.items()}
        owned = {
            i
            for i, attempt in held.items()
            if (self.model[i].status, self.model[i].worker_id, self.model[i].attempts)
            == (R, worker, attempt)
        }
        before = self.db_now()
        renewal = self.runner.run(self.store.renew_leases(worker, held, LEASE.total_seconds()))
        after = self.db_now()
        assert renewal.held == owned
        assert renewal.cancel_requested == {i for i in owned if self.model[i].cancel}
        for execution_id in owned:
            row = self.sql.execute(
                "SELECT lease_expires_at FROM lg_deploy.executions WHERE execution_id = %s",
                (execution_id,),
            ).fetchone()
            assert row is not None
            assert before + LEASE <= row["lease_expires_at"] <= after + LEASE
            self.model[execution_id].lease = row["lease_expires_at"]

    def stale_beliefs(self) -> list[ExecutionState]:
        """States workers still believe they hold although another attempt or outcome followed."""
        return [b for b in self.beliefs if self.model[b.execution_id].attempts != b.attempts]

    @precondition(lambda self: self.beliefs)
    @rule(pick=PICK, outcome=st.sampled_from([C, F, Q]))
    def finish(self, pick: int, outcome: ExecutionStatus) -> None:
        """A worker records an outcome for a state it believes it holds (perhaps stale)."""
        self.record(self.beliefs[pick % len(self.beliefs)], outcome)

    @precondition(lambda self: self.stale_beliefs())
    @rule(pick=PICK, outcome=st.sampled_from([C, F, Q]))
    def zombie_finish(self, pick: int, outcome: ExecutionStatus) -> None:
        """A worker whose attempt was superseded wakes up and records an outcome."""
        stale = self.stale_beliefs()
        self.record(stale[pick % len(stale)], outcome)

    def record(self, belief: ExecutionState, outcome: ExecutionStatus) -> None:
        """Store `outcome` as `belief`'s worker would; only the current holder may succeed."""
        if outcome == Q and belief.attempts >= belief.max_attempts:
            outcome = F
        error = {C: None, F: f"failed on {belief.worker_id}", Q: "retry"}[outcome]
        output = {"by": belief.worker_id} if outcome == C else None
        wanted = belief.evolve(status=outcome, error=error, output=output)
        e = self.model[belief.execution_id]
        holder = (e.status, e.worker_id, e.attempts) == (R, belief.worker_id, belief.attempts)
        try:
            stored = self.runner.run(self.store.update(wanted, expected_status=R))
        except InvalidTransition:
            assert not holder, "the holder's outcome was refused"
            return
        assert holder, "an outcome from an attempt that does not hold the execution was stored"
        assert stored.status == outcome
        e.status, e.error, e.lease = outcome, error, None

    @rule(seconds=st.sampled_from([0.0, 3.0, 6.0]))
    def expire(self, seconds: float) -> None:
        """`seconds` later, recovery hands back exactly the RUNNING rows whose lease passed."""
        self.now += timedelta(seconds=seconds)
        predicted = {
            i: lease_outcome(e)
            for i, e in self.model.items()
            if e.status == R and e.lease is not None and e.lease < self.now
        }
        recovered = self.runner.run(self.store.recover_expired(now=self.now))
        assert dict(recovered) == {i: status for i, (status, _) in predicted.items()}
        for execution_id, (status, error) in predicted.items():
            e = self.model[execution_id]
            e.status, e.error, e.lease = status, error, None

    @precondition(lambda self: self.model)
    @rule(pick=PICK)
    def cancel(self, pick: int) -> None:
        """QUEUED fails at once, RUNNING is marked, final is refused."""
        execution_id = self.pick_id(pick)
        e = self.model[execution_id]
        try:
            state = self.runner.run(self.store.request_cancel(execution_id))
        except InvalidTransition:
            assert e.status in FINAL_STATUSES
            return
        assert e.status not in FINAL_STATUSES
        e.cancel = True
        if e.status == Q:
            e.status, e.error = F, "cancelled"
        assert (state.status, state.error) == (e.status, e.error)

    @invariant()
    def rows_and_history_obey_the_lifecycle(self) -> None:
        """Valid event paths, one final event at most, frozen final rows, attempts, the model."""
        rows = self.sql.execute("SELECT * FROM lg_deploy.executions").fetchall()
        events: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in self.sql.execute(
            "SELECT * FROM lg_deploy.execution_events ORDER BY event_id"
        ).fetchall():
            events[str(event["execution_id"])].append(event)
        assert {str(row["execution_id"]) for row in rows} == set(self.model)
        for row in rows:
            execution_id = str(row["execution_id"])
            self.check_history(row, events[execution_id])
            self.check_model(row, self.model[execution_id])
            if row["status"] in FINAL_STATUSES:
                frozen = self.final_rows.setdefault(execution_id, row)
                assert row == frozen, "a final row changed"

    def check_history(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """The history starts NULL -> QUEUED, follows allowed transitions, ends at the status."""
        steps = [(e["from_status"], e["to_status"]) for e in history]
        assert steps[0] == (None, Q)
        for (_, previous_to), (step_from, step_to) in itertools.pairwise(steps):
            assert step_from == previous_to
            assert (ExecutionStatus(step_from), ExecutionStatus(step_to)) in ALLOWED_TRANSITIONS
        assert steps[-1][1] == row["status"]
        assert sum(1 for _, to in steps if to in FINAL_STATUSES) <= 1
        assert row["attempts"] <= row["max_attempts"]
        assert row["attempts"] == steps.count((Q, R))

    def check_model(self, row: dict[str, Any], e: Expected) -> None:
        """The row holds what the model predicts."""
        assert (row["status"], row["attempts"], row["error"]) == (e.status, e.attempts, e.error)
        assert row["lease_expires_at"] == (e.lease if e.status == R else None)
        assert (row["cancel_requested_at"] is not None) == e.cancel
        if e.status == R:
            assert row["worker_id"] == e.worker_id


@pytest.mark.req("DUR-STATE-MACHINE", "DUR-FENCE", "DUR-LEASE", "DUR-CANCEL")
def test_random_operation_sequences_keep_the_lifecycle_invariants(
    pg_template: NoopExecutor, deep: bool
) -> None:
    """Any sequence of submit/claim/renew/finish/expire/cancel/tick keeps every invariant."""
    server = {
        "host": pg_template.host,
        "port": pg_template.port,
        "user": pg_template.user,
        "password": pg_template.password,
    }
    template = pg_template.template_dbname
    examples = DEEP_EXAMPLES if deep else EXAMPLES
    run_state_machine_as_test(
        lambda: LifecycleMachine(server, template),
        settings=settings(MACHINE_SETTINGS, max_examples=examples),
    )
