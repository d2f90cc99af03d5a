"""A thread's state as the LangGraph API shows it: read from the graph's checkpoints.

`snapshot_json` turns a LangGraph StateSnapshot into the platform's ThreadState object; the
functions read the state now or at a checkpoint, list the history, and update the state, on the
graph compiled with the thread checkpointer (GraphRegistry.thread_graph).
"""

from __future__ import annotations

from typing import Any, cast

from langgraph.types import StateSnapshot

from lg_deploy.failures import describe_error
from lg_deploy.graphs import CompiledGraph, to_json_object


def plain(value: Any) -> Any:
    """`value` as plain JSON (models and dataclasses converted); GraphOutputError otherwise."""
    return to_json_object({"value": value})["value"]


def _checkpoint(config: Any) -> dict[str, Any] | None:
    """The {thread_id, checkpoint_ns, checkpoint_id} a snapshot's config points at."""
    if not config:
        return None
    configurable = config.get("configurable", {})
    return {
        "thread_id": configurable.get("thread_id"),
        "checkpoint_ns": configurable.get("checkpoint_ns", ""),
        "checkpoint_id": configurable.get("checkpoint_id"),
    }


def _interrupt(item: Any) -> dict[str, Any]:
    return {"id": item.id, "value": plain(item.value)}


def _task(task: Any) -> dict[str, Any]:
    state = task.state  # a subgraph's StateSnapshot (subgraphs=True), else its config
    nested = state if isinstance(state, StateSnapshot) else None
    return {
        "id": task.id,
        "name": task.name,
        "path": plain(list(task.path)),
        "error": describe_error(task.error) if isinstance(task.error, Exception) else task.error,
        "interrupts": [_interrupt(item) for item in task.interrupts],
        "checkpoint": None if nested is not None else _checkpoint(state),
        "state": snapshot_json(nested) if nested is not None else None,
        "result": plain(task.result) if task.result is not None else None,
    }


def snapshot_json(snapshot: Any) -> dict[str, Any]:
    """A LangGraph StateSnapshot as the platform's ThreadState."""
    checkpoint = _checkpoint(snapshot.config)
    parent = _checkpoint(snapshot.parent_config)
    values = snapshot.values
    return {
        "values": plain(values) if values is not None else {},
        "next": list(snapshot.next),
        "tasks": [_task(task) for task in snapshot.tasks],
        "metadata": plain(dict(snapshot.metadata or {})),
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint,
        "parent_checkpoint": parent,
        "interrupts": [_interrupt(item) for item in snapshot.interrupts],
        "checkpoint_id": checkpoint["checkpoint_id"] if checkpoint else None,
        "parent_checkpoint_id": parent["checkpoint_id"] if parent else None,
    }


def empty_state(thread_id: str) -> dict[str, Any]:
    """The state of a thread nothing has run on yet."""
    return {
        "values": {},
        "next": [],
        "tasks": [],
        "metadata": {},
        "created_at": None,
        "checkpoint": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": None},
        "parent_checkpoint": None,
        "interrupts": [],
        "checkpoint_id": None,
        "parent_checkpoint_id": None,
    }


def _config(thread_id: str, checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"configurable": {**(checkpoint or {}), "thread_id": thread_id}}


async def read_state(
    graph: CompiledGraph,
    thread_id: str,
    checkpoint: dict[str, Any] | None = None,
    *,
    subgraphs: bool = False,
) -> dict[str, Any] | None:
    """The thread's state now, or at `checkpoint` ({checkpoint_id, checkpoint_ns}); None when
    that checkpoint is not the thread's."""
    snapshot = await cast(Any, graph).aget_state(
        _config(thread_id, checkpoint), subgraphs=subgraphs
    )
    if snapshot.created_at is None:
        return None if checkpoint and checkpoint.get("checkpoint_id") else empty_state(thread_id)
    return snapshot_json(snapshot)


async def read_history(
    graph: CompiledGraph,
    thread_id: str,
    *,
    limit: int,
    before: str | None = None,
    metadata: dict[str, Any] | None = None,
    checkpoint_ns: str | None = None,
) -> list[dict[str, Any]]:
    """The thread's states newest first: at most `limit`, older than checkpoint `before`, whose
    metadata contains `metadata`."""
    config = _config(thread_id, {"checkpoint_ns": checkpoint_ns} if checkpoint_ns else None)
    before_config = _config(thread_id, {"checkpoint_id": before}) if before else None
    states = []
    async for snapshot in cast(Any, graph).aget_state_history(
        config, filter=metadata or None, before=before_config, limit=limit
    ):
        states.append(snapshot_json(snapshot))
    return states


async def write_state(
    graph: CompiledGraph,
    thread_id: str,
    values: Any,
    *,
    as_node: str | None = None,
    checkpoint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply `values` as node `as_node` would (from `checkpoint`, else the latest); the new
    checkpoint, as the platform answers it."""
    written = await cast(Any, graph).aupdate_state(
        _config(thread_id, checkpoint), values, as_node=as_node
    )
    pointer = _checkpoint(written) or {}
    return {
        "checkpoint": pointer,
        "configurable": pointer,
        "checkpoint_id": pointer.get("checkpoint_id"),
    }
