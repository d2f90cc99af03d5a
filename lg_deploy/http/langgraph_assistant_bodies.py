"""The bodies of the LangGraph assistant routes: create, patch, search, count, versions, latest."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from lg_deploy.assistants.models import AssistantQuery, AssistantSortKey
from lg_deploy.http.langgraph_threads import StorableObject
from lg_deploy.http.schemas import GRAPH_ID_PATTERN, check_storable, json_number

NAME_MAX_CHARS = 1_000
DESCRIPTION_MAX_CHARS = 10_000
AssistantField = Literal[
    "assistant_id",
    "graph_id",
    "name",
    "description",
    "config",
    "context",
    "metadata",
    "version",
    "created_at",
    "updated_at",
]
GraphId = Annotated[str, Field(pattern=GRAPH_ID_PATTERN, description="a served graph's name")]
# Text PostgreSQL can store (no NUL, no lone surrogate): a name, a description, a filter.
Storable = AfterValidator(check_storable)
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX_CHARS), Storable]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX_CHARS), Storable]
FilterText = Annotated[str, Storable]


class AssistantPatch(BaseModel):
    """Body of PATCH /assistants/{assistant_id}: what the new version changes."""

    model_config = ConfigDict(extra="forbid")

    graph_id: GraphId | None = None
    config: StorableObject | None = Field(default=None, description="replaces the current one")
    context: StorableObject | None = Field(default=None, description="replaces the current one")
    metadata: StorableObject | None = Field(default=None, description="merged into the current")
    name: Name | None = None
    description: Description | None = None


class AssistantCreate(AssistantPatch):
    """Body of POST /assistants."""

    assistant_id: uuid.UUID | None = None
    graph_id: GraphId
    if_exists: Literal["raise", "do_nothing"] = "raise"


class AssistantFilter(BaseModel):
    """Body of POST /assistants/count; the filters of a search (other keys are ignored)."""

    model_config = ConfigDict(extra="ignore")

    metadata: StorableObject | None = None
    graph_id: FilterText | None = None
    name: FilterText | None = Field(default=None, description="a part of the name, any case")

    def query(self, **page: Any) -> AssistantQuery:
        """These filters as an AssistantQuery, with `page` (order, limit, offset)."""
        return AssistantQuery(
            metadata=self.metadata or {}, graph_id=self.graph_id, name=self.name, **page
        )


class AssistantSearch(AssistantFilter):
    """Body of POST /assistants/search."""

    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: AssistantSortKey = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"
    select: list[AssistantField] | None = None

    @field_validator("limit", "offset", mode="before")
    @classmethod
    def _numbers_only(cls, value: Any) -> Any:
        return json_number(value)


class VersionSearch(BaseModel):
    """Body of POST /assistants/{assistant_id}/versions."""

    model_config = ConfigDict(extra="forbid")

    metadata: StorableObject | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)

    @field_validator("limit", "offset", mode="before")
    @classmethod
    def _numbers_only(cls, value: Any) -> Any:
        return json_number(value)


class LatestVersion(BaseModel):
    """Body of POST /assistants/{assistant_id}/latest."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1, description="the version to make current")

    @field_validator("version", mode="before")
    @classmethod
    def _number_only(cls, value: Any) -> Any:
        return json_number(value)
