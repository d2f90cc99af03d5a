"""A thread's checkpoints in LangGraph's in-memory saver: forget a run, copy a thread.

The same rules as the SQL for PostgreSQL (lg_deploy.forget_runs in sql/migrations/0010,
copy_thread_checkpoints in sql/queries/checkpoints.sql), on the saver's dictionaries:
LangGraph's savers offer neither (their delete_for_runs and copy_thread are not implemented).
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

ROOT_NS = ""
INTERRUPT, ERROR, RESUME = "__interrupt__", "__error__", "__resume__"
MARKS = (INTERRUPT, ERROR)  # what a checkpoint's writes keep of the run that stopped there


def _metadata(saver: InMemorySaver, stored: tuple[Any, ...]) -> dict[str, Any]:
    metadata: dict[str, Any] = saver.serde.loads_typed(stored[1])
    return metadata


def forget_run(saver: InMemorySaver, thread_id: str, run_id: str) -> None:
    """Delete what run `run_id` wrote on `thread_id`: its checkpoints and their writes, what
    it left on the checkpoint it started from, and blobs no checkpoint refers to any more."""
    namespaces = saver.storage.get(thread_id, {})
    own = {
        ns: [cp for cp, stored in saved.items() if _metadata(saver, stored).get("run_id") == run_id]
        for ns, saved in namespaces.items()
    }
    root = namespaces.get(ROOT_NS, {})
    first = min(own.get(ROOT_NS, []), default=None)
    base = root[first][2] if first is not None else max(root, default=None)
    if base is not None:
        _drop_run_writes(saver.writes.get((thread_id, ROOT_NS, base), {}))
    for ns, checkpoint_ids in own.items():
        for checkpoint_id in checkpoint_ids:
            del namespaces[ns][checkpoint_id]
            saver.writes.pop((thread_id, ns, checkpoint_id), None)
    _drop_unreferenced_blobs(saver, thread_id)


def _drop_run_writes(writes: dict[tuple[str, int], tuple[Any, ...]]) -> None:
    """On the checkpoint a run started from, drop what it wrote: a resume's value and the
    writes of the tasks it resumed, or every write when nothing marks a stop (a breakpoint)."""
    channels = [(key, stored[1]) for key, stored in writes.items()]
    interrupted = {key[0] for key, channel in channels if channel == INTERRUPT}
    marked = any(channel in MARKS for _, channel in channels)
    for key, channel in channels:
        if channel in MARKS:
            continue
        if channel == RESUME or key[0] in interrupted or not marked:
            del writes[key]


def _drop_unreferenced_blobs(saver: InMemorySaver, thread_id: str) -> None:
    referenced = {
        (ns, channel, version)
        for ns, saved in saver.storage.get(thread_id, {}).items()
        for stored in saved.values()
        for channel, version in saver.serde.loads_typed(stored[0])["channel_versions"].items()
    }
    for key in [k for k in saver.blobs if k[0] == thread_id and k[1:] not in referenced]:
        del saver.blobs[key]


def copy_thread(saver: InMemorySaver, source: str, target: str) -> None:
    """Give thread `target` a copy of every checkpoint, write and blob of thread `source`."""
    for ns, saved in list(saver.storage.get(source, {}).items()):
        saver.storage[target][ns] = {
            checkpoint_id: _relabelled(saver, stored, source, target)
            for checkpoint_id, stored in saved.items()
        }
    for (thread_id, ns, checkpoint_id), writes in list(saver.writes.items()):
        if thread_id == source:
            saver.writes[(target, ns, checkpoint_id)] = dict(writes)
    for (thread_id, ns, channel, version), blob in list(saver.blobs.items()):
        if thread_id == source:
            saver.blobs[(target, ns, channel, version)] = blob


def _relabelled(
    saver: InMemorySaver, stored: tuple[Any, ...], source: str, target: str
) -> tuple[Any, ...]:
    """A checkpoint's stored tuple with the thread its metadata names changed to `target`."""
    metadata = _metadata(saver, stored)
    if metadata.get("thread_id") != source:
        return stored
    return (stored[0], saver.serde.dumps_typed({**metadata, "thread_id": target}), *stored[2:])
