"""Execution stores: the protocol and its in-memory and PostgreSQL implementations."""

from lg_deploy.store.memory import InMemoryExecutionStore
from lg_deploy.store.postgres import PostgresExecutionStore
from lg_deploy.store.protocol import ExecutionStore

__all__ = ["ExecutionStore", "InMemoryExecutionStore", "PostgresExecutionStore"]
