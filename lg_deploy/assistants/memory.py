"""InMemoryAssistantStore: assistants and their versions in dicts, searched as the SQL does."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from lg_deploy.assistants.models import (
    Assistant,
    AssistantChange,
    AssistantQuery,
    AssistantVersion,
    NewAssistant,
)
from lg_deploy.assistants.rules import matches, page
from lg_deploy.db.jsonb import contains
from lg_deploy.models import utcnow


def _at(version: AssistantVersion, created_at: datetime, updated_at: datetime) -> Assistant:
    """The assistant at `version`, with its clocks."""
    fields = {**version.model_dump(), "created_at": created_at, "updated_at": updated_at}
    return Assistant(**fields)


class InMemoryAssistantStore:
    """Assistants of one process (the memory backend)."""

    def __init__(self) -> None:
        self._assistants: dict[str, Assistant] = {}
        self._versions: dict[str, dict[int, AssistantVersion]] = {}

    async def create(self, new: NewAssistant) -> Assistant | None:
        """A new assistant at version 1 (a fresh id when none is given); None when it is taken."""
        assistant_id = str(uuid.UUID(new.assistant_id)) if new.assistant_id else str(uuid.uuid4())
        if assistant_id in self._assistants:
            return None
        first = AssistantVersion(
            assistant_id=assistant_id,
            graph_id=new.graph_id,
            name=new.name,
            description=new.description,
            config=dict(new.config),
            context=dict(new.context),
            metadata=dict(new.metadata),
            version=1,
            created_at=utcnow(),
        )
        self._versions[assistant_id] = {1: first}
        self._assistants[assistant_id] = _at(first, first.created_at, first.created_at)
        return self._assistants[assistant_id]

    async def get(self, assistant_id: str) -> Assistant | None:
        """The assistant with this id, or None."""
        return self._assistants.get(str(uuid.UUID(assistant_id)))

    async def update(self, assistant_id: str, change: AssistantChange) -> Assistant | None:
        """A new version (one past the highest) with `change` applied, made current."""
        current = await self.get(assistant_id)
        if current is None:
            return None
        versions = self._versions[current.assistant_id]
        made = AssistantVersion(
            assistant_id=current.assistant_id,
            graph_id=change.graph_id if change.graph_id is not None else current.graph_id,
            name=change.name if change.name is not None else current.name,
            description=_kept(change.description, current.description),
            config=change.config if change.config is not None else current.config,
            context=change.context if change.context is not None else current.context,
            metadata={**current.metadata, **change.metadata},
            version=max(versions) + 1,
            created_at=utcnow(),
        )
        versions[made.version] = made
        self._assistants[current.assistant_id] = _at(made, current.created_at, made.created_at)
        return self._assistants[current.assistant_id]

    async def set_latest(self, assistant_id: str, version: int) -> Assistant | None:
        """Make an existing version current again; None when the assistant or version is absent."""
        current = await self.get(assistant_id)
        if current is None or version not in self._versions[current.assistant_id]:
            return None
        chosen = self._versions[current.assistant_id][version]
        self._assistants[current.assistant_id] = _at(chosen, current.created_at, utcnow())
        return self._assistants[current.assistant_id]

    async def delete(self, assistant_id: str) -> bool:
        """Delete the assistant and its versions; False when there was none."""
        key = str(uuid.UUID(assistant_id))
        self._versions.pop(key, None)
        return self._assistants.pop(key, None) is not None

    async def search(self, query: AssistantQuery) -> list[Assistant]:
        """One page of the assistants `query` asks for, in its order (the id breaks ties)."""
        return page(list(self._assistants.values()), query)

    async def count(self, query: AssistantQuery) -> int:
        """How many assistants match `query`'s filters (its order and page aside)."""
        return sum(1 for a in self._assistants.values() if matches(a, query))

    async def versions(
        self, assistant_id: str, metadata: dict[str, Any], limit: int, offset: int
    ) -> list[AssistantVersion]:
        """One page of an assistant's versions whose metadata contains `metadata`, newest first."""
        stored = self._versions.get(str(uuid.UUID(assistant_id)), {})
        found = [
            v for _, v in sorted(stored.items(), reverse=True) if contains(v.metadata, metadata)
        ]
        return found[offset : offset + limit]


def _kept(given: str | None, current: str | None) -> str | None:
    return given if given is not None else current
