"""The ThreadStore protocol: persistence of threads, nothing else."""

from __future__ import annotations

from typing import Any, Protocol

from lg_deploy.models import ExecutionState
from lg_deploy.threads.models import RunAdmission, Thread, ThreadQuery


class ThreadStore(Protocol):
    """Creates, reads, relabels, deletes and searches threads."""

    async def create(self, thread_id: str | None, metadata: dict[str, Any]) -> Thread | None:
        """A new idle thread (a fresh id when None); None when `thread_id` is taken."""
        ...

    async def get(self, thread_id: str) -> Thread | None:
        """The thread with this id, or None."""
        ...

    async def merge_metadata(self, thread_id: str, metadata: dict[str, Any]) -> Thread | None:
        """Merge `metadata` into the thread's (given keys replace); the thread, or None."""
        ...

    async def delete(self, thread_id: str) -> bool:
        """Delete the thread, its runs and its checkpoints; False when there was none."""
        ...

    async def delete_many(self, thread_ids: list[str]) -> int:
        """Delete the threads among `thread_ids` (runs and checkpoints too); how many existed."""
        ...

    async def copy(self, thread_id: str) -> Thread | None:
        """A new thread with this one's metadata, values and checkpoints (not its runs); None
        when there is no such thread."""
        ...

    async def search(self, query: ThreadQuery) -> list[Thread]:
        """One page of the threads `query` asks for, in its order."""
        ...

    async def count(self, query: ThreadQuery) -> int:
        """How many threads match `query`'s filters and ids (its order and page aside)."""
        ...

    async def submit_run(self, state: ExecutionState, admission: RunAdmission) -> ExecutionState:
        """Add a QUEUED run to its thread (state.thread_id) in one step, as `admission` says.

        Raises ThreadNotFound (no thread, and not to create it) or ThreadBusy (a run is in
        flight and the run asked to be refused then); runs in flight are cancelled first when
        asked, in the same step; the thread is labelled with its graph.
        """
        ...

    async def set_state(
        self, thread_id: str, values: dict[str, Any], interrupts: dict[str, Any], interrupted: bool
    ) -> None:
        """Cache the thread's state after an update: values, interrupts, and its status
        (interrupted or idle) unless a run is in flight."""
        ...
