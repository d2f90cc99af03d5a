"""Domain errors shared by stores, queues, the worker and the adapters above them."""

from __future__ import annotations

from collections.abc import Iterable


class LgDeployError(Exception):
    """Base class of every error lg-deploy raises on purpose."""


class ExecutionNotFound(LgDeployError):
    """No execution has this id."""

    def __init__(self, execution_id: str) -> None:
        super().__init__(f"execution {execution_id} not found")
        self.execution_id = execution_id


class ExecutionExists(LgDeployError):
    """An execution with this id already exists."""

    def __init__(self, execution_id: str) -> None:
        super().__init__(f"execution {execution_id} already exists")
        self.execution_id = execution_id


class IdempotencyKeyUsed(LgDeployError):
    """An execution was already submitted with this idempotency key."""

    def __init__(self, existing: object, key: str) -> None:
        super().__init__(f"idempotency key {key!r} was already used")
        self.existing = existing
        self.key = key


class InvalidTransition(LgDeployError):
    """The stored execution is not in the status (or attempt) the change expected."""

    def __init__(self, execution_id: str, detail: str) -> None:
        super().__init__(f"execution {execution_id}: {detail}")
        self.execution_id = execution_id


class UnknownGraph(LgDeployError):
    """No graph is registered under this name."""

    def __init__(self, graph_id: str, known: Iterable[str]) -> None:
        self.graph_id = graph_id
        self.known = sorted(known)
        super().__init__(f"unknown graph {graph_id!r}; known graphs: {', '.join(self.known)}")


class GraphLoadError(LgDeployError):
    """A configured graph spec cannot be imported or is not a graph."""


class GraphOutputError(LgDeployError):
    """A graph returned something that cannot be stored as a JSON object."""


class ConfigError(LgDeployError):
    """A setting has an invalid value; the message names the variable and what is allowed."""


class ThreadNotFound(LgDeployError):
    """No thread has this id."""

    def __init__(self, thread_id: str) -> None:
        super().__init__(f"thread {thread_id} not found")
        self.thread_id = thread_id


class StaleAttempt(LgDeployError):
    """An attempt whose run another attempt has taken over wrote a checkpoint: refused."""

    def __init__(self, execution_id: str, attempt: int) -> None:
        super().__init__(
            f"attempt {attempt} of execution {execution_id} no longer holds it (its lease"
            " passed to another attempt): its checkpoint writes are refused"
        )
        self.execution_id = execution_id


class ThreadBusy(LgDeployError):
    """The thread has a run in flight and the new run asked to be refused then."""

    def __init__(self, thread_id: str) -> None:
        super().__init__(f"thread {thread_id} is already running a task")
        self.thread_id = thread_id
