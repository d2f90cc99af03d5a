"""OutcomeWriter: group commit of a worker's outcomes; those arriving meanwhile share the next."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from lg_deploy.errors import LgDeployError
from lg_deploy.models import ExecutionState, Finish, Requeue
from lg_deploy.store.protocol import ExecutionStore

MAX_BATCH = 256

Outcome = Finish | Requeue
Pending = tuple[Outcome, "asyncio.Future[ExecutionState]"]


class OutcomeWriter:
    """Writes one worker's outcomes through `finish_running` / `requeue_running`, batched.

    The first outcome is written at once; outcomes that arrive while a statement is on its way
    wait for it and then go together (one statement per kind), so batches grow with load and
    add no delay when idle.
    """

    def __init__(
        self, store: ExecutionStore, worker_id: str, *, max_batch: int = MAX_BATCH
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._max_batch = max_batch
        self._pending: list[Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, outcome: Outcome) -> ExecutionState:
        """Store `outcome` while its attempt still holds the RUNNING row; the stored state.

        Raises the store's refusal (LgDeployError) or its error. Cancelling the wait withdraws
        the outcome unless its statement was already sent.
        """
        done: asyncio.Future[ExecutionState] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="lg-deploy-outcomes")
        return await done

    async def _write_all(self) -> None:
        while self._pending:
            batch = [item for item in self._pending[: self._max_batch] if not item[1].done()]
            del self._pending[: self._max_batch]
            finishes = [item for item in batch if isinstance(item[0], Finish)]
            requeues = [item for item in batch if isinstance(item[0], Requeue)]
            if finishes:
                await self._write(finishes)
            if requeues:
                await self._write(requeues)

    async def _write(self, batch: Sequence[Pending]) -> None:
        """One statement for a batch of one kind; each waiter gets its row's answer."""
        try:
            results = await self._send([outcome for outcome, _ in batch])
        except Exception as error:  # each caller decides whether to retry
            for _, done in batch:
                if not done.done():
                    done.set_exception(error)
            return
        for (_, done), result in zip(batch, results, strict=True):
            if done.done():
                continue
            if isinstance(result, LgDeployError):
                done.set_exception(result)
            else:
                done.set_result(result)

    async def _send(self, outcomes: list[Outcome]) -> list[ExecutionState | LgDeployError]:
        finishes = [outcome for outcome in outcomes if isinstance(outcome, Finish)]
        if finishes:
            return await self._store.finish_running(self._worker_id, finishes)
        requeues = [outcome for outcome in outcomes if isinstance(outcome, Requeue)]
        return await self._store.requeue_running(self._worker_id, requeues)
