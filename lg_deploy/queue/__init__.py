"""Execution queues: the protocol, a bounded asyncio queue and the PostgreSQL claim queue."""

from lg_deploy.queue.listener import Listener
from lg_deploy.queue.memory import AsyncioExecutionQueue
from lg_deploy.queue.postgres import PostgresExecutionQueue
from lg_deploy.queue.protocol import ClaimingQueue, ExecutionQueue

__all__ = [
    "AsyncioExecutionQueue",
    "ClaimingQueue",
    "ExecutionQueue",
    "Listener",
    "PostgresExecutionQueue",
]
