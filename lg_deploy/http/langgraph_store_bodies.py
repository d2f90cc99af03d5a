"""The bodies of the LangGraph store routes (put, get, delete, search, namespaces) and, for the
OpenAPI document, the shapes of their answers.

Namespaces and keys are bounded so an item's namespace and key always fit PostgreSQL's index
row (about 2.7 kB: LangGraph keys its table by both): at most NAMESPACE_MAX_DEPTH labels of
LABEL_MAX_CHARS, and keys of KEY_MAX_CHARS.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
)

from lg_deploy.http.langgraph_threads import StorableObject
from lg_deploy.http.schemas import check_storable, json_number

LABEL_MAX_CHARS = 64
NAMESPACE_MAX_DEPTH = 8
KEY_MAX_CHARS = 128
PAGE_MAX = 1000
OFFSET_MAX = 2_147_483_647
# LangGraph writes a TTL into SQL as "<seconds> seconds": a float in exponent form (below
# 1e-4) is not an interval PostgreSQL reads. At most 100 years (minutes are kept as integers).
TTL_MIN_MINUTES = 0.001
TTL_MAX_MINUTES = 52_560_000
RESERVED_ROOT = "langgraph"  # LangGraph refuses namespaces that start with it
LABEL_PATTERN = r"^[^.]+$"
# GET's namespace: the labels joined by dots, as both SDKs send it.
DOTTED_NAMESPACE_PATTERN = (
    rf"^[^.]{{1,{LABEL_MAX_CHARS}}}(\.[^.]{{1,{LABEL_MAX_CHARS}}}){{0,{NAMESPACE_MAX_DEPTH - 1}}}$"
)
OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")

Storable = AfterValidator(check_storable)
Label = Annotated[
    str, Field(min_length=1, max_length=LABEL_MAX_CHARS, pattern=LABEL_PATTERN), Storable
]
Labels = Annotated[list[Label], Field(max_length=NAMESPACE_MAX_DEPTH)]
Namespace = Annotated[list[Label], Field(min_length=1, max_length=NAMESPACE_MAX_DEPTH)]
Key = Annotated[str, Field(min_length=1, max_length=KEY_MAX_CHARS), Storable]
Limit = Annotated[int, Field(ge=1, le=PAGE_MAX)]
Offset = Annotated[int, Field(ge=0, le=OFFSET_MAX)]


class Comparison(BaseModel):
    """Operators on one field of an item's value; every one given must hold."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    eq: Any = Field(default=None, alias="$eq", description="equal (as JSON)")
    ne: Any = Field(default=None, alias="$ne", description="not equal (as JSON)")
    gt: Any = Field(default=None, alias="$gt", description="greater, compared as text")
    gte: Any = Field(default=None, alias="$gte", description="greater or equal, as text")
    lt: Any = Field(default=None, alias="$lt", description="less, compared as text")
    lte: Any = Field(default=None, alias="$lte", description="less or equal, as text")

    def operators(self) -> dict[str, Any]:
        """The operators given, by their names ($eq, ...)."""
        given: dict[str, Any] = self.model_dump(by_alias=True, exclude_unset=True)
        return given


FilterValue = Comparison | str | int | float | bool | None | list[Any]


class ItemPut(BaseModel):
    """Body of PUT /store/items: store or replace an item."""

    model_config = ConfigDict(extra="forbid")

    namespace: Namespace
    key: Key
    value: StorableObject
    index: Literal[False] | list[Annotated[str, Storable]] | None = Field(
        default=None, description="ignored: no semantic index is configured"
    )
    ttl: float | None = Field(
        default=None,
        ge=TTL_MIN_MINUTES,
        le=TTL_MAX_MINUTES,
        description="minutes until it expires; null: LG_DEPLOY_STORE_DEFAULT_TTL_SECONDS, if set",
    )

    @field_validator("namespace")
    @classmethod
    def _not_reserved(cls, value: list[str]) -> list[str]:
        if value[0] == RESERVED_ROOT:
            raise ValueError(f"the root label {RESERVED_ROOT!r} is reserved by LangGraph")
        return value

    @field_validator("index", mode="before")
    @classmethod
    def _false_or_paths(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, bool | list):
            raise ValueError("must be false, a list of field paths, or null")
        return value

    @field_validator("ttl", mode="before")
    @classmethod
    def _number_only(cls, value: Any) -> Any:
        return json_number(value) if value is not None else value


class ItemQuery(BaseModel):
    """Query of GET /store/items."""

    model_config = ConfigDict(extra="ignore")

    namespace: Annotated[str, Field(pattern=DOTTED_NAMESPACE_PATTERN), Storable]
    key: Key
    refresh_ttl: Literal["true", "false"] | None = None


class ItemDelete(BaseModel):
    """Body of DELETE /store/items (no namespace: nothing to delete)."""

    model_config = ConfigDict(extra="forbid")

    namespace: Labels = Field(default_factory=list)
    key: Key


class ItemSearch(BaseModel):
    """Body of POST /store/items/search: items under a namespace prefix, newest change first."""

    model_config = ConfigDict(extra="forbid")

    namespace_prefix: Labels | None = None
    filter: Annotated[dict[str, FilterValue], BeforeValidator(check_storable)] | None = None
    limit: Limit = 10
    offset: Offset = 0
    query: Annotated[str, Storable] | None = Field(
        default=None, description="ignored: no semantic index is configured"
    )
    refresh_ttl: StrictBool | None = None

    @field_validator("limit", "offset", mode="before")
    @classmethod
    def _numbers_only(cls, value: Any) -> Any:
        return json_number(value)

    def filters(self) -> dict[str, Any] | None:
        """The filter as the store takes it: each field's operators ($eq for a plain value)."""
        if self.filter is None:
            return None
        return {
            field: value.operators() if isinstance(value, Comparison) else {"$eq": value}
            for field, value in self.filter.items()
        }


class NamespaceSearch(BaseModel):
    """Body of POST /store/namespaces."""

    model_config = ConfigDict(extra="forbid")

    prefix: Labels | None = None
    suffix: Labels | None = None
    max_depth: Annotated[int, Field(ge=1, le=NAMESPACE_MAX_DEPTH)] | None = None
    limit: Limit = 100
    offset: Offset = 0

    @field_validator("max_depth", "limit", "offset", mode="before")
    @classmethod
    def _numbers_only(cls, value: Any) -> Any:
        return json_number(value) if value is not None else value


class StoreItem(BaseModel):
    """An item as the API shows it."""

    namespace: list[str]
    key: str
    value: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class FoundItem(StoreItem):
    """An item a search found; its score is null without a semantic index."""

    score: float | None


class FoundItems(BaseModel):
    """Answer of POST /store/items/search."""

    items: list[FoundItem]


class Namespaces(BaseModel):
    """Answer of POST /store/namespaces."""

    namespaces: list[list[str]]
