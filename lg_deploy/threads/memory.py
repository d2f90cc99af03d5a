"""InMemoryThreadStore: threads in a dict, searched and ordered as the SQL does."""

from __future__ import annotations

import uuid
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from lg_deploy.db.jsonb import contains
from lg_deploy.errors import ThreadBusy, ThreadNotFound
from lg_deploy.graphs import INTERRUPT_KEY
from lg_deploy.models import ExecutionState, ExecutionStatus, utcnow
from lg_deploy.store.memory import InMemoryExecutionStore
from lg_deploy.threads.checkpoints import copy_thread, forget_run
from lg_deploy.threads.models import RunAdmission, Thread, ThreadQuery, ThreadStatus


def _matches(thread: Thread, query: ThreadQuery) -> bool:
    return (
        contains(thread.metadata, query.metadata)
        and (query.values is None or contains(thread.values, query.values))
        and (query.status is None or thread.status == query.status)
        and (query.ids is None or thread.thread_id in {str(uuid.UUID(i)) for i in query.ids})
    )


class InMemoryThreadStore:
    """Threads of one process (the memory backend); over `executions`, they follow their runs
    as lg_deploy.threads_follow_runs makes them in SQL."""

    def __init__(
        self,
        executions: InMemoryExecutionStore | None = None,
        saver: InMemorySaver | None = None,
    ) -> None:
        self._threads: dict[str, Thread] = {}
        self._executions = executions
        self._saver = saver  # the threads' checkpoints, deleted and copied with them
        if executions is not None:
            executions.thread_follower = self._follow
            if saver is not None:
                executions.run_forgetter = self._forget_checkpoints

    async def create(self, thread_id: str | None, metadata: dict[str, Any]) -> Thread | None:
        """A new idle thread (a fresh id when None); None when `thread_id` is taken."""
        thread_id = str(uuid.UUID(thread_id)) if thread_id else str(uuid.uuid4())
        if thread_id in self._threads:
            return None
        now = utcnow()
        thread = Thread(
            thread_id=thread_id,
            status=ThreadStatus.IDLE,
            metadata=dict(metadata),
            config={},
            values=None,
            interrupts={},
            error=None,
            created_at=now,
            updated_at=now,
            state_updated_at=now,
        )
        self._threads[thread_id] = thread
        return thread

    async def get(self, thread_id: str) -> Thread | None:
        """The thread with this id, or None."""
        return self._threads.get(str(uuid.UUID(thread_id)))

    async def merge_metadata(self, thread_id: str, metadata: dict[str, Any]) -> Thread | None:
        """Merge `metadata` into the thread's (given keys replace); the thread, or None."""
        stored = await self.get(thread_id)
        if stored is None:
            return None
        merged = stored.model_copy(
            update={"metadata": {**stored.metadata, **metadata}, "updated_at": utcnow()}
        )
        self._threads[stored.thread_id] = merged
        return merged

    async def delete(self, thread_id: str) -> bool:
        """Delete the thread, its runs and its checkpoints; False when there was none."""
        return await self.delete_many([thread_id]) == 1

    async def delete_many(self, thread_ids: list[str]) -> int:
        """Delete the threads among `thread_ids` (runs and checkpoints too); how many existed."""
        unique = {str(uuid.UUID(i)) for i in thread_ids}
        for thread_id in unique:
            if self._executions is not None:
                self._executions.delete_thread_runs(thread_id)
            if self._saver is not None:
                self._saver.delete_thread(thread_id)
        return sum(1 for i in unique if self._threads.pop(i, None) is not None)

    async def copy(self, thread_id: str) -> Thread | None:
        """A new thread with this one's metadata, values and checkpoints (not its runs)."""
        source = await self.get(thread_id)
        if source is None:
            return None
        now = utcnow()
        status = ThreadStatus.IDLE if source.status == ThreadStatus.BUSY else source.status
        copied = source.model_copy(
            update={
                "thread_id": str(uuid.uuid4()),
                "status": status,
                "created_at": now,
                "updated_at": now,
                "state_updated_at": now,
            }
        )
        self._threads[copied.thread_id] = copied
        if self._saver is not None:
            copy_thread(self._saver, source.thread_id, copied.thread_id)
        return copied

    async def search(self, query: ThreadQuery) -> list[Thread]:
        """One page of the threads `query` asks for, in its order (thread id breaks ties)."""
        found = [t for t in self._threads.values() if _matches(t, query)]
        found.sort(key=lambda t: t.thread_id)
        found.sort(key=lambda t: getattr(t, query.sort_by), reverse=query.descending)
        return found[query.offset : query.offset + query.limit]

    async def count(self, query: ThreadQuery) -> int:
        """How many threads match `query`'s filters and ids (its order and page aside)."""
        return sum(1 for t in self._threads.values() if _matches(t, query))

    async def submit_run(self, state: ExecutionState, admission: RunAdmission) -> ExecutionState:
        """Add a QUEUED run to its thread (see ThreadStore.submit_run)."""
        if self._executions is None:
            raise RuntimeError("this thread store has no executions to add runs to")
        thread_id = state.thread_id
        assert thread_id is not None
        thread = await self.get(thread_id)
        if thread is None:
            if not admission.create_thread:
                raise ThreadNotFound(thread_id)
            thread = await self.create(thread_id, {})
            assert thread is not None
        runs = self._executions.runs_of_thread(thread.thread_id)
        if admission.reject_if_busy and any(not run.is_final for run in runs):
            raise ThreadBusy(thread_id)
        if admission.cancel_in_flight is not None:
            await self._executions.cancel_thread_runs(thread.thread_id, admission.cancel_in_flight)
        if not {"graph_id", "assistant_id"} <= thread.metadata.keys():
            labels = {"graph_id": state.graph_id, "assistant_id": admission.assistant_id}
            metadata = {**labels, **thread.metadata}
            self._threads[thread.thread_id] = thread.model_copy(update={"metadata": metadata})
        return await self._executions.create(state, delay_seconds=admission.delay_seconds)

    async def set_state(
        self, thread_id: str, values: dict[str, Any], interrupts: dict[str, Any], interrupted: bool
    ) -> None:
        """Cache the thread's state after an update (see ThreadStore.set_state)."""
        thread = await self.get(thread_id)
        if thread is None:
            return
        status = thread.status
        if status != ThreadStatus.BUSY:
            status = ThreadStatus.INTERRUPTED if interrupted else ThreadStatus.IDLE
        now = utcnow()
        update = {"values": values, "interrupts": interrupts, "status": status}
        self._threads[thread.thread_id] = thread.model_copy(
            update={**update, "updated_at": now, "state_updated_at": now}
        )

    def _forget_checkpoints(self, run: ExecutionState) -> None:
        """Delete what a rolled-back run wrote on its thread's checkpoints."""
        if self._saver is not None and run.thread_id is not None:
            forget_run(self._saver, run.thread_id, run.execution_id)

    def _follow(self, changed: ExecutionState, runs: list[ExecutionState]) -> None:
        """What the threads trigger does when a run of a thread is inserted or changes status."""
        thread = self._threads.get(changed.thread_id or "")
        if thread is None:
            return
        update: dict[str, Any] = {"updated_at": utcnow()}
        if changed.is_final:
            update["state_updated_at"] = update["updated_at"]
            if changed.status != ExecutionStatus.FAILED and changed.output is not None:
                values = {k: v for k, v in changed.output.items() if k != INTERRUPT_KEY}
                update["values"] = values
            update["interrupts"] = (
                changed.interrupts or {} if changed.status == ExecutionStatus.INTERRUPTED else {}
            )
            failed = changed.status == ExecutionStatus.FAILED and changed.error != "cancelled"
            update["error"] = changed.error if failed else None
        update["status"] = thread_status(runs)
        self._threads[thread.thread_id] = thread.model_copy(update=update)


def thread_status(runs: list[ExecutionState]) -> ThreadStatus:
    """A thread's status from its runs, as lg_deploy.threads_follow_runs decides it."""
    if any(not run.is_final for run in runs):
        return ThreadStatus.BUSY
    finished = [run for run in runs if run.finished_at is not None]
    if not finished:
        return ThreadStatus.IDLE
    last = max(finished, key=lambda run: (run.finished_at, run.execution_id))
    if last.status == ExecutionStatus.INTERRUPTED:
        return ThreadStatus.INTERRUPTED
    if last.status == ExecutionStatus.FAILED and last.error != "cancelled":
        return ThreadStatus.ERROR
    return ThreadStatus.IDLE
