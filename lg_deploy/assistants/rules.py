"""The rules the memory store and the catalog apply as the SQL does: filters and order."""

from __future__ import annotations

from collections.abc import Iterable

from lg_deploy.assistants.models import Assistant, AssistantQuery
from lg_deploy.db.jsonb import contains


def matches(assistant: Assistant, query: AssistantQuery) -> bool:
    """True when the assistant passes the query's graph, name-part and metadata filters."""
    return (
        query.graph_id in (None, assistant.graph_id)
        and (query.name is None or query.name.lower() in assistant.name.lower())
        and contains(assistant.metadata, query.metadata)
    )


def ordered(assistants: Iterable[Assistant], query: AssistantQuery) -> list[Assistant]:
    """The assistants in the query's order; the id, ascending, breaks ties (as search does)."""
    found = sorted(assistants, key=lambda a: a.assistant_id)
    found.sort(key=lambda a: getattr(a, query.sort_by), reverse=query.descending)
    return found


def page(assistants: list[Assistant], query: AssistantQuery) -> list[Assistant]:
    """The query's page of matching assistants, in its order."""
    found = ordered((a for a in assistants if matches(a, query)), query)
    return found[query.offset : query.offset + query.limit]
