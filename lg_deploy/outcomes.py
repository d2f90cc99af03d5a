"""OutcomeWriter: group commit of outcome updates; those arriving during a write share the next."""

from __future__ import annotations

import asyncio

from lg_deploy.errors import LgDeployError
from lg_deploy.models import ExecutionState, ExecutionStatus
from lg_deploy.store.protocol import ExecutionStore

MAX_BATCH = 256


class OutcomeWriter:
    """Writes `update`s from RUNNING through `store.update_many`, one statement per batch.

    The first outcome is written at once; outcomes that arrive while a statement is on its way
    wait for it and then go together, so batches grow with load and add no delay when idle.
    """

    def __init__(self, store: ExecutionStore, *, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._max_batch = max_batch
        self._pending: list[tuple[ExecutionState, asyncio.Future[ExecutionState]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def update(self, state: ExecutionState) -> ExecutionState:
        """Store `state` if its attempt still owns the RUNNING row (see ExecutionStore.update).

        Cancelling the wait withdraws the update unless its statement was already sent.
        """
        done: asyncio.Future[ExecutionState] = asyncio.get_running_loop().create_future()
        self._pending.append((state, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="lg-deploy-outcomes")
        return await done

    async def _write_all(self) -> None:
        while self._pending:
            batch = [item for item in self._pending[: self._max_batch] if not item[1].done()]
            del self._pending[: self._max_batch]
            if batch:
                await self._write(batch)

    async def _write(
        self, batch: list[tuple[ExecutionState, asyncio.Future[ExecutionState]]]
    ) -> None:
        try:
            results = await self._store.update_many(
                [state for state, _ in batch], expected_status=ExecutionStatus.RUNNING
            )
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
