"""The assistants the LangGraph API shows: the stored ones plus one system assistant per graph.

A system assistant is not stored: it is the served graph itself, with the platform's id
uuid5(NAMESPACE_GRAPH, graph_id), metadata {"created_by": "system"} and version 1; runs can name
it by that id or by the graph name, and it cannot be changed.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Sequence

from lg_deploy.assistants.models import Assistant, AssistantQuery
from lg_deploy.assistants.protocol import AssistantStore
from lg_deploy.assistants.rules import matches, ordered
from lg_deploy.models import utcnow

# The platform's namespace for default assistant ids: uuid5(NAMESPACE_GRAPH, graph_id).
NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
SYSTEM_METADATA = {"created_by": "system"}
_STARTED = utcnow()  # a system assistant's clocks: when this process started


@functools.lru_cache(maxsize=1024)
def assistant_id_of(graph_id: str) -> str:
    """The platform's default (system) assistant id for a graph (remembered: every run asks)."""
    return str(uuid.uuid5(NAMESPACE_GRAPH, graph_id))


def system_assistant(graph_id: str) -> Assistant:
    """A served graph's system assistant."""
    return Assistant(
        assistant_id=assistant_id_of(graph_id),
        graph_id=graph_id,
        name=graph_id,
        description=None,
        config={},
        context={},
        metadata=dict(SYSTEM_METADATA),
        version=1,
        created_at=_STARTED,
        updated_at=_STARTED,
    )


def is_system(assistant: Assistant) -> bool:
    """True for a graph's system assistant (its id is the uuid5 of its graph)."""
    return assistant.assistant_id == assistant_id_of(assistant.graph_id)


def canonical_id(text: str) -> str | None:
    """An assistant id in canonical UUID form; None for text that is not a UUID."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


class AssistantCatalog:
    """Stored assistants (`store`) and the system assistants of the served graphs."""

    def __init__(self, store: AssistantStore, graph_ids: Sequence[str]) -> None:
        self.store = store
        self.graph_ids = list(graph_ids)

    def system(self, assistant_id: str) -> Assistant | None:
        """The system assistant this id (a graph name, or its uuid5) names, or None."""
        for graph_id in self.graph_ids:
            if assistant_id in (graph_id, assistant_id_of(graph_id)):
                return system_assistant(graph_id)
        return None

    async def find(self, assistant_id: str) -> Assistant | None:
        """The system or stored assistant this id names, or None."""
        system = self.system(assistant_id)
        if system is not None:
            return system
        canonical = canonical_id(assistant_id)
        return None if canonical is None else await self.store.get(canonical)

    async def search(self, query: AssistantQuery) -> list[Assistant]:
        """One page of the system and stored assistants `query` asks for, in its order."""
        wanted = query.offset + query.limit
        # the first `wanted` stored ones, since the page is cut after merging
        stored = await self.store.search(dataclasses.replace(query, limit=wanted, offset=0))
        found = ordered([*self._systems(query), *stored], query)
        return found[query.offset : wanted]

    async def count(self, query: AssistantQuery) -> int:
        """How many system and stored assistants match `query`'s filters."""
        return len(self._systems(query)) + await self.store.count(query)

    def _systems(self, query: AssistantQuery) -> list[Assistant]:
        systems = (system_assistant(graph_id) for graph_id in self.graph_ids)
        return [a for a in systems if matches(a, query)]
