"""The assistant stores, and the catalog over them: one behaviour suite run against memory and
PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from lg_deploy.assistants.catalog import AssistantCatalog, assistant_id_of
from lg_deploy.assistants.memory import InMemoryAssistantStore
from lg_deploy.assistants.models import (
    AssistantChange,
    AssistantQuery,
    AssistantSortKey,
    NewAssistant,
)
from lg_deploy.assistants.postgres import PostgresAssistantStore
from lg_deploy.assistants.protocol import AssistantStore
from lg_deploy.assistants.rules import ordered
from lg_deploy.db.pool import open_pool


@pytest.fixture
async def assistants(backend_url: str | None) -> AsyncIterator[AssistantStore]:
    """The memory assistant store, or the PostgreSQL one on a fresh database."""
    if backend_url is None:
        yield InMemoryAssistantStore()
        return
    pool = await open_pool(backend_url, max_size=2)
    try:
        yield PostgresAssistantStore(pool)
    finally:
        await pool.close()


@pytest.mark.req("ASSISTANTS")
async def test_an_assistant_is_created_at_version_1_and_read_back(
    assistants: AssistantStore,
) -> None:
    """A fresh id or the one given, version 1, "Untitled" by default; a taken id gives None."""
    fresh = await assistants.create(NewAssistant(graph_id="chat"))
    assert fresh is not None
    assert uuid.UUID(fresh.assistant_id)
    assert (fresh.graph_id, fresh.name, fresh.description, fresh.version) == (
        "chat",
        "Untitled",
        None,
        1,
    )
    assert (fresh.config, fresh.context, fresh.metadata) == ({}, {}, {})
    assert fresh.created_at == fresh.updated_at
    chosen = str(uuid.uuid4())
    new = NewAssistant(
        graph_id="echo",
        assistant_id=chosen,
        name="Ann's",
        description="for ann",
        config={"configurable": {"user_id": "ann"}, "tags": ["a"]},
        context={"user": "ann"},
        metadata={"team": "blue"},
    )
    made = await assistants.create(new)
    assert made is not None
    assert (made.assistant_id, made.name, made.description) == (chosen, "Ann's", "for ann")
    assert (made.config, made.context, made.metadata) == (new.config, new.context, new.metadata)
    assert await assistants.create(NewAssistant(graph_id="chat", assistant_id=chosen)) is None
    assert await assistants.get(chosen) == made
    assert await assistants.get(str(uuid.uuid4())) is None
    versions = await assistants.versions(chosen, {}, 10, 0)
    assert [v.model_dump() for v in versions] == [made.model_dump(exclude={"updated_at"})]


@pytest.mark.req("ASSISTANTS")
async def test_updates_make_versions_and_any_version_can_be_made_current_again(
    assistants: AssistantStore,
) -> None:
    """Each update is a new version, one past the highest, made current (metadata merged, other
    fields replaced when given); set_latest restores a version; versions list newest first."""
    made = await assistants.create(
        NewAssistant(graph_id="chat", name="one", config={"tags": ["x"]}, metadata={"a": 1})
    )
    assert made is not None
    key = made.assistant_id
    second = await assistants.update(
        key, AssistantChange(name="two", context={"user": "bob"}, metadata={"b": 2})
    )
    assert second is not None
    assert (second.version, second.name, second.graph_id) == (2, "two", "chat")
    assert (second.config, second.context, second.metadata) == (
        {"tags": ["x"]},
        {"user": "bob"},
        {"a": 1, "b": 2},
    )
    assert (second.created_at, second.updated_at > made.updated_at) == (made.created_at, True)
    third = await assistants.update(
        key, AssistantChange(graph_id="echo", config={}, description="d", metadata={"a": 3})
    )
    assert third is not None
    assert (third.version, third.graph_id, third.config, third.description) == (3, "echo", {}, "d")
    assert third.metadata == {"a": 3, "b": 2}
    back = await assistants.set_latest(key, 1)
    assert back is not None
    assert (back.version, back.name, back.graph_id, back.config, back.metadata) == (
        1,
        "one",
        "chat",
        {"tags": ["x"]},
        {"a": 1},
    )
    assert await assistants.get(key) == back
    fourth = await assistants.update(key, AssistantChange(metadata={"c": 4}))
    assert fourth is not None
    assert (fourth.version, fourth.name, fourth.metadata) == (4, "one", {"a": 1, "c": 4})
    versions = await assistants.versions(key, {}, 10, 0)
    assert [v.version for v in versions] == [4, 3, 2, 1]
    assert [v.name for v in versions] == ["one", "two", "two", "one"]
    assert [v.version for v in await assistants.versions(key, {"b": 2}, 10, 0)] == [3, 2]
    assert [v.version for v in await assistants.versions(key, {}, 2, 1)] == [3, 2]
    assert await assistants.set_latest(key, 9) is None
    missing = str(uuid.uuid4())
    assert await assistants.set_latest(missing, 1) is None
    assert await assistants.update(missing, AssistantChange(name="x")) is None
    assert await assistants.versions(missing, {}, 10, 0) == []


@pytest.mark.req("ASSISTANTS")
async def test_delete_removes_the_assistant_and_its_versions(assistants: AssistantStore) -> None:
    """Delete answers True once, then False; the versions are gone with it."""
    made = await assistants.create(NewAssistant(graph_id="chat"))
    assert made is not None
    await assistants.update(made.assistant_id, AssistantChange(name="again"))
    assert await assistants.delete(made.assistant_id) is True
    assert await assistants.get(made.assistant_id) is None
    assert await assistants.versions(made.assistant_id, {}, 10, 0) == []
    assert await assistants.delete(made.assistant_id) is False


@pytest.mark.req("ASSISTANTS")
async def test_search_filters_by_graph_name_part_and_metadata_and_orders_in_pages(
    assistants: AssistantStore,
) -> None:
    """Graph, a part of the name in any case, contained metadata; every sort key both ways with
    the id breaking ties; limit and offset; count agrees with the filters."""
    names = ["Beta", "alpha", "Gamma", "alphabet", "Zeta"]
    made = []
    for number, name in enumerate(names):
        metadata = {"n": number, "team": {"colour": "blue" if number % 2 else "red"}}
        graph = "chat" if number < 3 else "echo"
        created = await assistants.create(
            NewAssistant(graph_id=graph, name=name, metadata=metadata)
        )
        assert created is not None
        made.append(created)

    async def found(**query: Any) -> list[str]:
        return [a.name for a in await assistants.search(AssistantQuery(**query))]

    assert await found() == ["Zeta", "alphabet", "Gamma", "alpha", "Beta"]
    assert await found(descending=False, limit=2, offset=1) == ["alpha", "Gamma"]
    assert await found(sort_by="name", descending=False) == sorted(names)
    assert await found(sort_by="name") == sorted(names, reverse=True)
    by_id = sorted(made, key=lambda a: a.assistant_id)
    assert await found(sort_by="assistant_id", descending=False) == [a.name for a in by_id]
    assert await found(sort_by="graph_id", descending=False) == [
        a.name for a in sorted(by_id, key=lambda a: a.graph_id)
    ]
    assert await found(sort_by="updated_at", descending=False) == names
    assert await found(graph_id="echo", descending=False) == ["alphabet", "Zeta"]
    assert await found(name="ALPH", descending=False) == ["alpha", "alphabet"]
    assert await found(metadata={"team": {"colour": "blue"}}, descending=False) == [
        "alpha",
        "alphabet",
    ]
    assert await assistants.count(AssistantQuery(name="a")) == 5
    assert await assistants.count(AssistantQuery(graph_id="chat", name="ET")) == 1
    assert await assistants.count(AssistantQuery(metadata={"n": 9})) == 0
    assert await assistants.count(AssistantQuery(limit=1, offset=3)) == 5


@pytest.mark.req("ASSISTANTS")
def test_the_database_refuses_assistant_rows_no_api_would_write(
    sql: psycopg.Connection[Any],
) -> None:
    """Non-object config, context or metadata, an empty graph_id or version 0 are refused by
    their named CHECK constraints; a version of no assistant by its foreign key."""
    for column, value, constraint in [
        ("config", "'[1]'::jsonb", "assistants_config_is_object"),
        ("context", "'1'::jsonb", "assistants_context_is_object"),
        ("metadata", "'\"x\"'::jsonb", "assistants_metadata_is_object"),
        ("graph_id", "''", "assistants_graph_id_length"),
        ("version", "0", "assistants_version_positive"),
    ]:
        columns = "graph_id, name" if column == "graph_id" else f"graph_id, name, {column}"
        values = f"{value}, 'n'" if column == "graph_id" else f"'g', 'n', {value}"
        with pytest.raises(psycopg.errors.CheckViolation) as refused:
            sql.execute(f"INSERT INTO lg_deploy.assistants ({columns}) VALUES ({values})")
        assert refused.value.diag.constraint_name == constraint
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as orphan:
        sql.execute(
            "INSERT INTO lg_deploy.assistant_versions (assistant_id, version, graph_id, name)"
            " VALUES (gen_random_uuid(), 1, 'g', 'n')"
        )
    assert orphan.value.diag.constraint_name == "assistant_versions_assistant_fkey"


@pytest.mark.req("ASSISTANTS")
async def test_updates_at_once_each_get_a_version_of_their_own(assistants: AssistantStore) -> None:
    """Five updates of one assistant at once make versions 2 to 6, each current in turn: the
    row is locked while a version is added (PostgreSQL), so none is lost or doubled."""
    made = await assistants.create(NewAssistant(graph_id="chat"))
    assert made is not None
    changes = [AssistantChange(metadata={f"k{n}": n}) for n in range(5)]
    updated = await asyncio.gather(*(assistants.update(made.assistant_id, c) for c in changes))
    assert sorted(a.version for a in updated if a is not None) == [2, 3, 4, 5, 6]
    final = await assistants.get(made.assistant_id)
    assert final is not None
    assert (final.version, final.metadata) == (6, {f"k{n}": n for n in range(5)})
    versions = await assistants.versions(made.assistant_id, {}, 10, 0)
    assert [v.version for v in versions] == [6, 5, 4, 3, 2, 1]


@pytest.mark.req("ASSISTANTS")
@pytest.mark.parametrize(
    ("sort_by", "descending"),
    [("created_at", True), ("name", False), ("assistant_id", True), ("graph_id", False)],
)
async def test_catalog_pages_merge_system_and_stored_assistants_in_one_order(
    assistants: AssistantStore, sort_by: AssistantSortKey, descending: bool
) -> None:
    """The catalog's pages of system and stored assistants, put end to end, are the one ordered
    list of them all, whatever the order asked; count agrees; names and uuid5 find system ones."""
    graphs = ["echo", "chat", "review"]
    for number, graph in enumerate(["chat", "echo", "chat", "review", "echo"]):
        await assistants.create(NewAssistant(graph_id=graph, name=f"{graph} {number}"))
    catalog = AssistantCatalog(assistants, graphs)
    whole = AssistantQuery(sort_by=sort_by, descending=descending, limit=100)
    everything = await catalog.search(whole)
    assert len(everything) == await catalog.count(whole) == 8
    assert everything == ordered(everything, whole)
    pages = []
    for offset in range(0, 8, 3):
        query = AssistantQuery(sort_by=sort_by, descending=descending, limit=3, offset=offset)
        pages += await catalog.search(query)
    assert pages == everything
    chats = await catalog.search(AssistantQuery(graph_id="chat", name="CHAT", limit=100))
    assert sorted(a.name for a in chats) == ["chat", "chat 0", "chat 2"]
    system = catalog.system("chat")
    assert system is not None
    assert await catalog.find(assistant_id_of("chat")) == system
    assert await catalog.find("nope") is None
    assert await catalog.find(str(uuid.uuid4())) is None
