"""InMemoryThreadStore: threads in a dict, searched and ordered as the SQL does."""

from __future__ import annotations

import uuid
from typing import Any

from lg_deploy.models import utcnow
from lg_deploy.threads.models import Thread, ThreadQuery, ThreadStatus


def _contains(stored: Any, wanted: Any) -> bool:
    """PostgreSQL's jsonb `@>` on objects: every wanted key present with a contained value."""
    if isinstance(wanted, dict):
        return isinstance(stored, dict) and all(
            key in stored and _contains(stored[key], value) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return isinstance(stored, list) and all(
            any(_contains(item, value) for item in stored) for value in wanted
        )
    return bool(stored == wanted)


def _matches(thread: Thread, query: ThreadQuery) -> bool:
    return (
        _contains(thread.metadata, query.metadata)
        and (query.values is None or _contains(thread.values, query.values))
        and (query.status is None or thread.status == query.status)
        and (query.ids is None or thread.thread_id in {str(uuid.UUID(i)) for i in query.ids})
    )


class InMemoryThreadStore:
    """Threads of one process (the memory backend)."""

    def __init__(self) -> None:
        self._threads: dict[str, Thread] = {}

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
        """Delete the thread; False when there was none."""
        return self._threads.pop(str(uuid.UUID(thread_id)), None) is not None

    async def delete_many(self, thread_ids: list[str]) -> int:
        """Delete the threads among `thread_ids`; how many existed."""
        unique = {str(uuid.UUID(i)) for i in thread_ids}
        return sum(1 for i in unique if self._threads.pop(i, None) is not None)

    async def search(self, query: ThreadQuery) -> list[Thread]:
        """One page of the threads `query` asks for, in its order (thread id breaks ties)."""
        found = [t for t in self._threads.values() if _matches(t, query)]
        found.sort(key=lambda t: t.thread_id)
        found.sort(key=lambda t: getattr(t, query.sort_by), reverse=query.descending)
        return found[query.offset : query.offset + query.limit]

    async def count(self, query: ThreadQuery) -> int:
        """How many threads match `query`'s filters and ids (its order and page aside)."""
        return sum(1 for t in self._threads.values() if _matches(t, query))
