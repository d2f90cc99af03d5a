"""InMemoryExecutionStore: a dict behind a lock, with the same rules as PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from lg_deploy.errors import (
    ExecutionExists,
    ExecutionNotFound,
    IdempotencyKeyUsed,
    InvalidTransition,
    LgDeployError,
)
from lg_deploy.models import (
    MUTABLE_FIELDS,
    ROLLBACK,
    CancelAction,
    ExecutionEvent,
    ExecutionState,
    ExecutionStatus,
    Finish,
    LeaseRenewal,
    PageCursor,
    Requeue,
    StatusCount,
    utcnow,
)
from lg_deploy.store.rules import check_new, check_transition, explain_refusal, lease_expiry_outcome

ThreadFollower = Callable[[ExecutionState, list[ExecutionState]], None]
RunForgetter = Callable[[ExecutionState], None]


class InMemoryExecutionStore:
    """Single-process store for development and tests; state is lost when the process ends."""

    def __init__(self) -> None:
        self._rows: dict[str, ExecutionState] = {}
        self._events: dict[str, list[ExecutionEvent]] = {}
        self._event_ids = itertools.count(1)
        self._lock = asyncio.Lock()
        # What the threads trigger does: told of each insert or status change of a thread run,
        # with all the runs of its thread (InMemoryThreadStore sets it).
        self.thread_follower: ThreadFollower | None = None
        # Told of every status change (lg_deploy.streams.memory, as the streams trigger).
        self.stream_follower: Callable[[ExecutionStatus | None, ExecutionState], None] | None = None
        # What lg_deploy.forget_runs does to the checkpoints of a run rolled back (the runtime
        # sets it over its in-memory checkpointer).
        self.run_forgetter: RunForgetter | None = None

    async def create(self, state: ExecutionState, *, delay_seconds: float = 0.0) -> ExecutionState:
        """Persist a new QUEUED execution and return it as stored (see ExecutionStore.create)."""
        check_new(state)
        async with self._lock:
            if state.execution_id in self._rows:
                raise ExecutionExists(state.execution_id)
            key = state.idempotency_key
            if key is not None and (existing := self._by_key(key)) is not None:
                raise IdempotencyKeyUsed(existing, key)
            now = utcnow()
            due = now + timedelta(seconds=delay_seconds)
            run_at = state.run_at if "run_at" in state.model_fields_set else due
            stored = state.evolve(created_at=now, updated_at=now, run_at=run_at)
            self._rows[state.execution_id] = stored
            self._events[state.execution_id] = []
            self._record(None, stored)
            return stored

    async def get(self, execution_id: str) -> ExecutionState | None:
        """The execution with this id, or None."""
        return self._rows.get(execution_id)

    async def update(
        self, state: ExecutionState, *, expected_status: ExecutionStatus
    ) -> ExecutionState:
        """Store `state` only if the stored row is still in `expected_status` (and attempt)."""
        check_transition(state, expected_status)
        async with self._lock:
            stored = self._rows.get(state.execution_id)
            if stored is None or not _guard_holds(stored, state, expected_status):
                raise explain_refusal(state.execution_id, stored, state, expected_status)
            updated = stored.evolve(**_changes(stored, state))
            self._rows[state.execution_id] = updated
            if updated.status != stored.status:
                self._record(stored.status, updated)
            return updated

    async def finish_running(
        self, worker_id: str, finishes: Sequence[Finish]
    ) -> list[ExecutionState | LgDeployError]:
        """Final outcomes of held runs, each in turn (see ExecutionStore.finish_running)."""
        results: list[ExecutionState | LgDeployError] = []
        async with self._lock:
            for finish in finishes:
                changes = {
                    "status": finish.status,
                    "output": finish.output,
                    "error": finish.error,
                    "traceback": finish.traceback,
                    "interrupts": finish.interrupts,
                }
                results.append(self._change_held(worker_id, finish.running, changes))
        return results

    async def requeue_running(
        self, worker_id: str, requeues: Sequence[Requeue]
    ) -> list[ExecutionState | LgDeployError]:
        """Held runs back to the queue, each in turn (see ExecutionStore.requeue_running)."""
        results: list[ExecutionState | LgDeployError] = []
        async with self._lock:
            for requeue in requeues:
                stored = self._rows.get(requeue.running.execution_id)
                changes: dict[str, Any] = {"traceback": requeue.traceback}
                if stored is not None and stored.attempts < stored.max_attempts:
                    changes.update(
                        status=ExecutionStatus.QUEUED,
                        error=requeue.error_if_requeued(stored.attempts, stored.max_attempts),
                        run_at=requeue.run_at or stored.run_at,
                    )
                else:
                    changes.update(status=ExecutionStatus.FAILED, error=requeue.final_error)
                results.append(self._change_held(worker_id, requeue.running, changes))
        return results

    def _change_held(
        self, worker_id: str, running: ExecutionState, changes: dict[str, Any]
    ) -> ExecutionState | LgDeployError:
        """Apply an outcome's `changes` if `running`'s attempt still holds the row (lock held)."""
        stored = self._rows.get(running.execution_id)
        if stored is None or not _owned(stored, worker_id, running.attempts):
            expected = ExecutionStatus.RUNNING
            return explain_refusal(running.execution_id, stored, running, expected)
        try:
            wanted = stored.evolve(**changes)
        except ValueError as error:
            return InvalidTransition(running.execution_id, str(error).splitlines()[0])
        updated = stored.evolve(**_changes(stored, wanted))
        self._rows[running.execution_id] = updated
        self._record(stored.status, updated)
        return updated

    async def claim(
        self,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        graph_ids: Collection[str] | None = None,
    ) -> list[ExecutionState]:
        """Claim up to `limit` due QUEUED rows as the claim statement does, in its order.

        Highest priority first, then earliest run_at, then execution id; each becomes RUNNING,
        its attempt counted, leased to `worker_id`. `graph_ids` None: rows of any graph.
        """
        now = utcnow()
        lease = now + timedelta(seconds=lease_seconds)
        async with self._lock:
            due = [
                row
                for row in self._rows.values()
                if row.status == ExecutionStatus.QUEUED
                and row.run_at <= now
                and (graph_ids is None or row.graph_id in graph_ids)
            ]
            due.sort(key=lambda row: (-row.priority, row.run_at, row.execution_id))
            claimed = []
            for row in [row for row in due if self._thread_allows(row)][:limit]:
                running = row.evolve(
                    status=ExecutionStatus.RUNNING,
                    attempts=row.attempts + 1,
                    worker_id=worker_id,
                    lease_expires_at=lease,
                )
                claimed.append(self._store_change(row, running))
            return claimed

    def _thread_allows(self, row: ExecutionState) -> bool:
        """The claim's thread gate: no RUNNING run on the thread, no older QUEUED one."""
        if row.thread_id is None:
            return True
        return not any(
            other.thread_id == row.thread_id
            and (
                other.status == ExecutionStatus.RUNNING
                or (
                    other.status == ExecutionStatus.QUEUED
                    and _oldest_first_key(other) < _oldest_first_key(row)
                )
            )
            for other in self._rows.values()
        )

    async def release_unstarted(
        self, worker_id: str, states: Sequence[ExecutionState], reason: str
    ) -> None:
        """Claimed rows no run started, back to QUEUED uncounted, as release_unstarted does."""
        async with self._lock:
            for state in states:
                row = self._rows.get(state.execution_id)
                if row is None or not _owned(row, worker_id, state.attempts):
                    continue
                back = row.evolve(
                    status=ExecutionStatus.QUEUED, attempts=row.attempts - 1, error=reason
                )
                self._store_change(row, back)

    def next_due(self, graph_ids: Collection[str] | None = None) -> datetime | None:
        """When the earliest QUEUED row (of `graph_ids`, if given) is due; None if none waits."""
        return min(
            (
                row.run_at
                for row in self._rows.values()
                if row.status == ExecutionStatus.QUEUED
                and (graph_ids is None or row.graph_id in graph_ids)
            ),
            default=None,
        )

    def _store_change(self, stored: ExecutionState, wanted: ExecutionState) -> ExecutionState:
        """Store `wanted` over `stored` with the trigger's clocks and event (lock held)."""
        updated = stored.evolve(**_changes(stored, wanted))
        self._rows[stored.execution_id] = updated
        if updated.status != stored.status:
            self._record(stored.status, updated)
        return updated

    async def list_executions(
        self,
        *,
        status: ExecutionStatus | None = None,
        graph_id: str | None = None,
        limit: int = 50,
        before: PageCursor | None = None,
    ) -> list[ExecutionState]:
        """Executions newest first, optionally filtered, strictly older than `before`."""
        rows = sorted(self._rows.values(), key=_newest_first_key, reverse=True)
        if before is not None:
            cursor = (before.created_at, before.execution_id)
            rows = [row for row in rows if _newest_first_key(row) < cursor]
        rows = [
            row
            for row in rows
            if (status is None or row.status == status)
            and (graph_id is None or row.graph_id == graph_id)
        ]
        return rows[:limit]

    async def list_thread_runs(
        self,
        thread_id: str,
        *,
        status: ExecutionStatus | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[ExecutionState]:
        """A thread's runs newest first, optionally of one status; one page."""
        rows = sorted(self._rows.values(), key=_newest_first_key, reverse=True)
        mine = [r for r in rows if r.thread_id == thread_id and status in (None, r.status)]
        return mine[offset : offset + limit]

    async def delete_final(self, execution_id: str) -> bool:
        """Delete a finished execution and its events; False when absent or still in flight."""
        async with self._lock:
            row = self._rows.get(execution_id)
            if row is None or not row.is_final:
                return False
            del self._rows[execution_id]
            del self._events[execution_id]
            return True

    def delete_thread_runs(self, thread_id: str) -> None:
        """Delete a thread's runs and their events (the foreign key's ON DELETE CASCADE)."""
        for run in self.runs_of_thread(thread_id):
            del self._rows[run.execution_id]
            del self._events[run.execution_id]

    def runs_of_thread(self, thread_id: str) -> list[ExecutionState]:
        """Every run of one thread, in no order."""
        return [row for row in self._rows.values() if row.thread_id == thread_id]

    async def events(self, execution_id: str) -> list[ExecutionEvent]:
        """The history of one execution, oldest first (empty for an unknown id)."""
        return list(self._events.get(execution_id, ()))

    async def count_active(self) -> list[StatusCount]:
        """How many executions are QUEUED and RUNNING, per graph."""
        active = (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)
        counts = Counter((r.graph_id, r.status) for r in self._rows.values() if r.status in active)
        return [
            StatusCount(graph_id=graph_id, status=status, count=count)
            for (graph_id, status), count in sorted(counts.items())
        ]

    async def renew_leases(
        self, worker_id: str, held: dict[str, int], lease_seconds: float
    ) -> LeaseRenewal:
        """Extend the leases of {execution_id: attempt} this worker still holds, in one step."""
        expires = utcnow() + timedelta(seconds=lease_seconds)
        still: set[str] = set()
        stop: set[str] = set()
        async with self._lock:
            for execution_id, attempt in held.items():
                row = self._rows.get(execution_id)
                if row is None or not _owned(row, worker_id, attempt):
                    continue
                self._rows[execution_id] = row.evolve(lease_expires_at=expires)
                still.add(execution_id)
                if row.cancel_requested_at is not None:
                    stop.add(execution_id)
        return LeaseRenewal(held=frozenset(still), cancel_requested=frozenset(stop))

    async def recover_expired(
        self, *, now: datetime | None = None, limit: int = 100
    ) -> list[tuple[str, ExecutionStatus]]:
        """Recover RUNNING executions whose lease passed (QUEUED, or FAILED when none left)."""
        moment = now or utcnow()
        recovered: list[tuple[str, ExecutionStatus]] = []
        async with self._lock:
            expired = [
                row
                for row in self._rows.values()
                if row.status == ExecutionStatus.RUNNING
                and row.lease_expires_at is not None
                and row.lease_expires_at < moment
            ]
            for row in sorted(expired, key=lambda r: r.lease_expires_at or moment)[:limit]:
                status, error = lease_expiry_outcome(row)
                updated = row.evolve(**_changes(row, row.evolve(status=status, error=error)))
                self._rows[row.execution_id] = updated
                self._record(row.status, updated)
                recovered.append((row.execution_id, status))
        return recovered

    async def request_cancel(
        self, execution_id: str, action: CancelAction = "interrupt"
    ) -> ExecutionState:
        """QUEUED: FAILED "cancelled" now; RUNNING: marked for its worker to stop; a rollback
        is forgotten as it ends so."""
        async with self._lock:
            return self._cancel(execution_id, action)

    async def cancel_thread_runs(self, thread_id: str, action: CancelAction) -> None:
        """Cancel a thread's runs in flight, as request_cancel does given a thread."""
        async with self._lock:
            for row in self.runs_of_thread(thread_id):
                if not row.is_final:
                    self._cancel(row.execution_id, action)

    def _cancel(self, execution_id: str, action: CancelAction) -> ExecutionState:
        """request_cancel with the lock held."""
        row = self._rows.get(execution_id)
        if row is None:
            raise ExecutionNotFound(execution_id)
        if row.is_final:
            raise InvalidTransition(execution_id, f"it is {row.status} and final")
        marked = row.evolve(
            cancel_requested_at=row.cancel_requested_at or utcnow(),
            cancel_action=ROLLBACK if row.cancel_action == ROLLBACK else action,
        )
        if row.status == ExecutionStatus.QUEUED:
            failed = marked.evolve(status=ExecutionStatus.FAILED, error="cancelled")
            marked = marked.evolve(**_changes(row, failed))
        self._rows[execution_id] = marked
        if marked.status != row.status:
            self._record(row.status, marked)
        return marked

    def _forget(self, state: ExecutionState) -> None:
        """Delete a rolled-back run, its history and its checkpoints (lg_deploy.forget_runs)."""
        if self.run_forgetter is not None:
            self.run_forgetter(state)
        self._rows.pop(state.execution_id, None)
        self._events.pop(state.execution_id, None)

    def _by_key(self, key: str) -> ExecutionState | None:
        return next((r for r in self._rows.values() if r.idempotency_key == key), None)

    def _record(self, from_status: ExecutionStatus | None, state: ExecutionState) -> None:
        """Append the event the SQL triggers would write for this insert or status change."""
        carries_error = state.status in (ExecutionStatus.FAILED, ExecutionStatus.QUEUED)
        event = ExecutionEvent(
            event_id=next(self._event_ids),
            execution_id=state.execution_id,
            from_status=from_status,
            to_status=state.status,
            at=state.updated_at,
            worker_id=state.worker_id if from_status is not None else None,
            attempt=state.attempts,
            error=state.error if carries_error and from_status is not None else None,
            traceback=state.traceback if carries_error and from_status is not None else None,
        )
        self._events[state.execution_id].append(event)
        if _rolled_back(from_status, state):
            self._forget(state)
        if state.thread_id is not None and self.thread_follower is not None:
            self.thread_follower(state, self.runs_of_thread(state.thread_id))
        if self.stream_follower is not None:
            self.stream_follower(from_status, state)


def _rolled_back(from_status: ExecutionStatus | None, state: ExecutionState) -> bool:
    """True when a run asked to roll back has just ended cancelled (executions_rollback)."""
    failed = ExecutionStatus.FAILED
    return (
        from_status not in (None, failed)
        and state.status == failed
        and (state.cancel_action == ROLLBACK)
    )


def _owned(row: ExecutionState, worker_id: str, attempt: int) -> bool:
    return (
        row.status == ExecutionStatus.RUNNING
        and row.worker_id == worker_id
        and row.attempts == attempt
    )


def _oldest_first_key(state: ExecutionState) -> tuple[Any, str]:
    return (state.created_at, state.execution_id)


def _newest_first_key(state: ExecutionState) -> tuple[Any, str]:
    return (state.created_at, state.execution_id)


def _guard_holds(
    stored: ExecutionState, wanted: ExecutionState, expected_status: ExecutionStatus
) -> bool:
    if stored.status != expected_status:
        return False
    if stored.status != ExecutionStatus.RUNNING:
        return True
    return stored.attempts == wanted.attempts and stored.worker_id == wanted.worker_id


def _changes(stored: ExecutionState, wanted: ExecutionState) -> dict[str, Any]:
    """The mutable fields of `wanted` plus the clocks, as the SQL guard trigger keeps them."""
    now = utcnow()
    changes: dict[str, Any] = {name: getattr(wanted, name) for name in MUTABLE_FIELDS}
    changes["updated_at"] = now
    requeued = stored.status == ExecutionStatus.RUNNING and wanted.status == ExecutionStatus.QUEUED
    if requeued and stored.cancel_requested_at is not None:
        wanted = wanted.evolve(status=ExecutionStatus.FAILED, error="cancelled")
        changes.update(status=wanted.status, error=wanted.error)
    if wanted.status != stored.status:
        if wanted.status == ExecutionStatus.RUNNING:
            changes["started_at"] = now
        elif wanted.status == ExecutionStatus.QUEUED:
            changes["lease_expires_at"] = None
        else:
            changes.update(finished_at=now, lease_expires_at=None)
    return changes
