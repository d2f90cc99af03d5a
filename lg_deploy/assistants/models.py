"""Assistant, AssistantVersion and what creating, changing and searching assistants ask for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

AssistantSortKey = Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"]
DEFAULT_NAME = "Untitled"  # the platform's name for an assistant created without one


class AssistantVersion(BaseModel):
    """One version of an assistant, as it was made (the LangGraph API's AssistantVersion)."""

    model_config = ConfigDict(frozen=True)

    assistant_id: str
    graph_id: str
    name: str
    description: str | None
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    created_at: AwareDatetime


class Assistant(AssistantVersion):
    """An assistant at its current version (the LangGraph API's Assistant resource)."""

    updated_at: AwareDatetime


@dataclass(frozen=True)
class NewAssistant:
    """What creating an assistant gives: its graph, config, context and labels (id: optional)."""

    graph_id: str
    assistant_id: str | None = None
    name: str = DEFAULT_NAME
    description: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AssistantChange:
    """What an update changes (None: keep); `metadata` is merged into the current one."""

    graph_id: str | None = None
    name: str | None = None
    description: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AssistantQuery:
    """Which assistants a search or count wants: graph, name part, contained metadata, order."""

    metadata: dict[str, Any] = field(default_factory=dict)
    graph_id: str | None = None
    name: str | None = None  # a part of the name, in any case
    sort_by: AssistantSortKey = "created_at"
    descending: bool = True
    limit: int = 10
    offset: int = 0
