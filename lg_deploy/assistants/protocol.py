"""The AssistantStore protocol: persistence of stored assistants and their versions."""

from __future__ import annotations

from typing import Any, Protocol

from lg_deploy.assistants.models import (
    Assistant,
    AssistantChange,
    AssistantQuery,
    AssistantVersion,
    NewAssistant,
)


class AssistantStore(Protocol):
    """Creates, reads, versions, deletes and searches stored assistants."""

    async def create(self, new: NewAssistant) -> Assistant | None:
        """A new assistant at version 1 (a fresh id when none is given); None when it is taken."""
        ...

    async def get(self, assistant_id: str) -> Assistant | None:
        """The assistant with this id, or None."""
        ...

    async def update(self, assistant_id: str, change: AssistantChange) -> Assistant | None:
        """A new version (one past the highest) with `change` applied, made current; None when
        there is no such assistant."""
        ...

    async def set_latest(self, assistant_id: str, version: int) -> Assistant | None:
        """Make an existing version current again; None when the assistant or version is absent."""
        ...

    async def delete(self, assistant_id: str) -> bool:
        """Delete the assistant and its versions; False when there was none."""
        ...

    async def search(self, query: AssistantQuery) -> list[Assistant]:
        """One page of the assistants `query` asks for, in its order (the id breaks ties)."""
        ...

    async def count(self, query: AssistantQuery) -> int:
        """How many assistants match `query`'s filters (its order and page aside)."""
        ...

    async def versions(
        self, assistant_id: str, metadata: dict[str, Any], limit: int, offset: int
    ) -> list[AssistantVersion]:
        """One page of an assistant's versions whose metadata contains `metadata`, newest first."""
        ...
