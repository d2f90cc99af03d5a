"""Queues: the ExecutionQueue and Claimer protocols, and their in-memory and PostgreSQL kinds."""

from lg_deploy.queue.memory import AsyncioExecutionQueue, MemoryClaimer
from lg_deploy.queue.postgres import PostgresClaimer
from lg_deploy.queue.protocol import Claimer, ExecutionQueue

__all__ = [
    "AsyncioExecutionQueue",
    "Claimer",
    "ExecutionQueue",
    "MemoryClaimer",
    "PostgresClaimer",
]
