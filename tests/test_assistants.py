"""Assistants through the Python SDK and a real serve: create, read, version, search, delete,
their graph, schemas and subgraphs, their config and context in runs, and bad input."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError
from starlette.testclient import TestClient

from lg_deploy.assistants.catalog import assistant_id_of
from lg_deploy.http import create_app
from lg_deploy.settings import load_settings
from tests.support.graphs import ASSISTANT_GRAPHS, THREAD_API_KEY

HEADERS = {"x-api-key": THREAD_API_KEY}
SERVED = sorted(ASSISTANT_GRAPHS)


@pytest.mark.req("ASSISTANTS")
async def test_the_python_sdk_creates_versions_searches_and_deletes_assistants(
    sdk: LangGraphClient, sql: psycopg.Connection[Any]
) -> None:
    """create (id, config, context, metadata, name, description, if_exists), get, update into
    versions, get_versions, set_latest, search and count beside the system assistants (which
    have one version), delete; psql sees the rows and every version."""
    chosen = str(uuid.uuid4())
    made = await sdk.assistants.create(
        "chat",
        config={"configurable": {"user_id": "ann"}},
        context={"user": "ann"},
        metadata={"team": "blue"},
        assistant_id=chosen,
        name="Ann's chat",
        description="talks to ann",
    )
    assert (made["assistant_id"], made["graph_id"], made["version"]) == (chosen, "chat", 1)
    assert (made["name"], made["description"], made["metadata"]) == (
        "Ann's chat",
        "talks to ann",
        {"team": "blue"},
    )
    assert (made["config"], made["context"]) == (
        {"configurable": {"user_id": "ann"}},
        {"user": "ann"},
    )
    assert await sdk.assistants.create("echo", assistant_id=chosen, if_exists="do_nothing") == made
    with pytest.raises(ConflictError):
        await sdk.assistants.create("echo", assistant_id=chosen)
    system_echo = assistant_id_of("echo")
    held = await sdk.assistants.create("chat", assistant_id=system_echo, if_exists="do_nothing")
    assert (held["graph_id"], held["metadata"]) == ("echo", {"created_by": "system"})
    with pytest.raises(ConflictError):
        await sdk.assistants.create("chat", assistant_id=system_echo)
    other = await sdk.assistants.create("echo")
    assert (other["name"], other["config"], other["context"], other["metadata"]) == (
        "Untitled",
        {},
        {},
        {},
    )
    assert await sdk.assistants.get(chosen) == made

    second = await sdk.assistants.update(chosen, metadata={"size": "big"}, name="Ann's talk")
    assert (second["version"], second["name"], second["config"]) == (
        2,
        "Ann's talk",
        made["config"],
    )
    assert second["metadata"] == {"team": "blue", "size": "big"}
    assert second["created_at"] == made["created_at"]
    third = await sdk.assistants.update(
        chosen, graph_id="review", config={}, context={"editor": "ann"}
    )
    assert (third["version"], third["graph_id"], third["config"], third["context"]) == (
        3,
        "review",
        {},
        {"editor": "ann"},
    )
    versions = await sdk.assistants.get_versions(chosen)
    assert [(v["version"], v["graph_id"], v["name"]) for v in versions] == [
        (3, "review", "Ann's talk"),
        (2, "chat", "Ann's talk"),
        (1, "chat", "Ann's chat"),
    ]
    assert "updated_at" not in versions[0]
    big = await sdk.assistants.get_versions(chosen, metadata={"size": "big"})
    assert [v["version"] for v in big] == [3, 2]
    assert [v["version"] for v in await sdk.assistants.get_versions(chosen, limit=1, offset=1)] == [
        2
    ]
    back = await sdk.assistants.set_latest(chosen, 1)
    assert (back["version"], back["name"], back["graph_id"], back["metadata"]) == (
        1,
        "Ann's chat",
        "chat",
        {"team": "blue"},
    )
    assert await sdk.assistants.get(chosen) == back
    fourth = await sdk.assistants.update(chosen, description="still ann")
    assert (fourth["version"], fourth["name"], fourth["description"]) == (
        4,
        "Ann's chat",
        "still ann",
    )

    everything = await sdk.assistants.search(limit=100)
    assert [a["assistant_id"] for a in everything[:2]] == [other["assistant_id"], chosen]
    assert [a["graph_id"] for a in everything[2:]] == sorted(
        SERVED, key=assistant_id_of
    )  # system assistants: all made at start, the id breaks the tie
    systems = await sdk.assistants.search(metadata={"created_by": "system"}, limit=100)
    assert sorted(a["assistant_id"] for a in systems) == sorted(map(assistant_id_of, SERVED))
    chats = await sdk.assistants.search(graph_id="chat")
    assert [a["assistant_id"] for a in chats] == [chosen, assistant_id_of("chat")]
    assert [a["assistant_id"] for a in await sdk.assistants.search(name="ANN'S")] == [chosen]
    by_name = await sdk.assistants.search(
        sort_by="name", sort_order="asc", select=["name", "version"], limit=100
    )
    assert by_name == sorted(
        [{"name": "Ann's chat", "version": 4}, {"name": "Untitled", "version": 1}]
        + [{"name": graph, "version": 1} for graph in SERVED],
        key=lambda a: str(a["name"]),
    )
    first_page = await sdk.assistants.search(limit=3, response_format="object")
    assert (len(first_page["assistants"]), first_page["next"]) == (3, "3")
    total = len(SERVED) + 2  # the system assistants and two stored ones
    last = await sdk.assistants.search(limit=3, offset=total - 2, response_format="object")
    assert (len(last["assistants"]), last["next"]) == (2, None)
    assert await sdk.assistants.count() == len(SERVED) + 2
    assert await sdk.assistants.count(graph_id="chat") == 2
    assert await sdk.assistants.count(metadata={"team": "blue"}) == 1
    assert await sdk.assistants.count(name="untitled") == 1
    system_versions = await sdk.assistants.get_versions("chat")
    assert [(v["assistant_id"], v["version"]) for v in system_versions] == [
        (assistant_id_of("chat"), 1)
    ]
    assert await sdk.assistants.get_versions("chat", metadata={"team": "blue"}) == []

    rows = sql.execute(
        "SELECT assistant_id::text, graph_id, name, description, version, metadata"
        " FROM lg_deploy.assistants ORDER BY created_at"
    ).fetchall()
    assert rows == [
        (chosen, "chat", "Ann's chat", "still ann", 4, {"team": "blue"}),
        (other["assistant_id"], "echo", "Untitled", None, 1, {}),
    ]
    history = sql.execute(
        "SELECT version, graph_id, name, config, context, metadata"
        " FROM lg_deploy.assistant_versions WHERE assistant_id = %s ORDER BY version",
        (chosen,),
    ).fetchall()
    assert history == [
        (1, "chat", "Ann's chat", made["config"], {"user": "ann"}, {"team": "blue"}),
        (2, "chat", "Ann's talk", made["config"], {"user": "ann"}, {"team": "blue", "size": "big"}),
        (3, "review", "Ann's talk", {}, {"editor": "ann"}, {"team": "blue", "size": "big"}),
        (4, "chat", "Ann's chat", made["config"], {"user": "ann"}, {"team": "blue"}),
    ]

    await sdk.assistants.delete(other["assistant_id"])
    with pytest.raises(NotFoundError):
        await sdk.assistants.get(other["assistant_id"])
    with pytest.raises(NotFoundError):
        await sdk.assistants.delete(other["assistant_id"])
    left = sql.execute(
        "SELECT count(*) FROM lg_deploy.assistant_versions WHERE assistant_id = %s",
        (other["assistant_id"],),
    ).fetchone()
    assert left == (0,)


def _node_ids(drawing: dict[str, Any]) -> set[str]:
    return {node["id"] for node in drawing["nodes"]}


@pytest.mark.req("ASSISTANTS")
async def test_an_assistants_graph_schemas_and_subgraphs_come_from_its_compiled_graph(
    sdk: LangGraphClient,
) -> None:
    """get_graph draws nodes and edges (xray=1 one level of subgraphs, xray=True all),
    get_schemas gives the graph's JSON schemas, get_subgraphs its subgraphs by namespace
    (recurse: nested ones too); the same for a stored assistant and the system one."""
    stored = await sdk.assistants.create("review", name="reviewer")
    for assistant_id in (stored["assistant_id"], "review", assistant_id_of("review")):
        flat = await sdk.assistants.get_graph(assistant_id)
        assert _node_ids(flat) == {"__start__", "review", "publish", "__end__"}
        edges = {(edge["source"], edge["target"]) for edge in flat["edges"]}
        assert edges == {("__start__", "review"), ("review", "publish"), ("publish", "__end__")}
        one_level = _node_ids(await sdk.assistants.get_graph(assistant_id, xray=1))
        assert {"review:spell", "review:tone"} <= one_level
        assert "review:spell:spell" not in one_level
        every_level = _node_ids(await sdk.assistants.get_graph(assistant_id, xray=True))
        assert {"review:spell:spell", "review:tone"} <= every_level

        schemas = await sdk.assistants.get_schemas(assistant_id)
        assert schemas["graph_id"] == "review"
        assert schemas["input_schema"] is not None
        assert schemas["input_schema"]["required"] == ["text"]
        state = {"text", "notes", "published"}
        for name in ("state_schema", "output_schema"):
            found = schemas[name]
            assert set(found["properties"]) == state, name
        context = schemas["context_schema"]
        assert context is not None
        assert context["properties"] == {"editor": {"title": "Editor", "type": "string"}}
        assert schemas["config_schema"] == context

        top = await sdk.assistants.get_subgraphs(assistant_id)
        assert list(top) == ["review"]
        assert set(top["review"]["state_schema"]["properties"]) == state
        nested = await sdk.assistants.get_subgraphs(assistant_id, recurse=True)
        assert list(nested) == ["review", "review|spell"]
        assert list(await sdk.assistants.get_subgraphs(assistant_id, namespace="review")) == [
            "review"
        ]
    echo = await sdk.assistants.get_schemas("echo")
    assert (echo["graph_id"], echo["state_schema"], echo["context_schema"]) == ("echo", None, None)
    assert await sdk.assistants.get_subgraphs("echo") == {}
    assert _node_ids(await sdk.assistants.get_graph("echo")) == {"__start__", "graph", "__end__"}


@pytest.mark.req("ASSISTANTS", "THREAD-RUNS")
async def test_an_assistants_config_and_context_reach_its_runs_under_the_runs_own(
    sdk: LangGraphClient, sql: psycopg.Connection[Any]
) -> None:
    """A stored assistant's configurable and context reach the graph, under the run's own keys
    (configurable merged key by key); the run and its thread name the assistant, its row records
    it; a run queued before its assistant is deleted still runs with its config; delete_threads
    deletes the threads it labelled."""
    by_config = await sdk.assistants.create(
        "chat", config={"configurable": {"user_id": "ann"}, "tags": ["ann"]}
    )
    by_context = await sdk.assistants.create("chat", context={"user": "bob"})
    config_id, context_id = by_config["assistant_id"], by_context["assistant_id"]
    hi = {"message": "hi"}
    assert (await sdk.runs.wait(None, config_id, input=hi))["replies"] == ["turn 1 for ann: hi"]
    assert (await sdk.runs.wait(None, context_id, input=hi))["replies"] == ["turn 1 for bob: hi"]
    own = await sdk.runs.wait(None, context_id, input=hi, context={"user": "cat"})
    assert own["replies"] == ["turn 1 for cat: hi"]
    merged = await sdk.runs.create(
        None, config_id, input=hi, config={"configurable": {"team": "blue"}}
    )
    assert merged["assistant_id"] == config_id
    assert await sdk.runs.join(merged["thread_id"], merged["run_id"]) == {
        "message": "hi",
        "messages": ["hi"],
        "replies": ["turn 1 for ann: hi"],
    }
    system = await sdk.runs.create(None, "chat", input=hi)
    assert system["assistant_id"] == assistant_id_of("chat")
    assert (await sdk.runs.join(system["thread_id"], system["run_id"]))["replies"] == [
        "turn 1 for someone: hi"
    ]

    thread = (await sdk.threads.create())["thread_id"]
    on_thread = await sdk.runs.wait(thread, context_id, input={"message": "yo"})
    assert on_thread["replies"] == ["turn 1 for bob: yo"]
    labels = (await sdk.threads.get(thread))["metadata"]
    assert (labels["graph_id"], labels["assistant_id"]) == ("chat", context_id)
    assert [run["assistant_id"] for run in await sdk.runs.list(thread)] == [context_id]

    rows = sql.execute(
        "SELECT assistant_id::text, config -> 'configurable', config -> 'tags', context"
        " FROM lg_deploy.executions WHERE execution_id = ANY(%s::uuid[])",
        ([merged["run_id"], system["run_id"]],),
    ).fetchall()
    assert sorted(rows, key=str) == sorted(
        [
            (config_id, {"user_id": "ann", "team": "blue"}, ["ann"], {}),
            (None, None, None, {}),
        ],
        key=str,
    )

    later = await sdk.runs.create(None, config_id, input={"message": "later"}, after_seconds=3)
    await sdk.assistants.delete(config_id)
    status = sql.execute(
        "SELECT status FROM lg_deploy.executions WHERE execution_id = %s", (later["run_id"],)
    ).fetchone()
    assert status == ("QUEUED",)
    done = await sdk.runs.join(later["thread_id"], later["run_id"])
    assert done["replies"] == ["turn 1 for ann: later"]
    assert (await sdk.runs.get(later["thread_id"], later["run_id"]))["assistant_id"] == config_id

    kept = (await sdk.threads.create())["thread_id"]
    await sdk.assistants.delete(context_id, delete_threads=True)
    with pytest.raises(NotFoundError):
        await sdk.threads.get(thread)
    assert (await sdk.threads.get(kept))["thread_id"] == kept


def _assistant_rows(sql: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return sql.execute(
        "SELECT a.assistant_id::text, a.version, a.updated_at, count(v.version)"
        " FROM lg_deploy.assistants a JOIN lg_deploy.assistant_versions v USING (assistant_id)"
        " GROUP BY 1, 2, 3 ORDER BY 1"
    ).fetchall()


@pytest.mark.req("ASSISTANTS")
async def test_bad_assistant_requests_get_json_errors_and_change_nothing(
    thread_server: str, sdk: LangGraphClient, sql: psycopg.Connection[Any]
) -> None:
    """Unknown ids 404, changing a system assistant 409, an unknown graph 422 naming the known
    ones, bad bodies and parameters 422; each a JSON error with the request id, nothing written;
    an assistant whose graph is not served can be read but not run."""
    stored = (await sdk.assistants.create("chat", name="kept"))["assistant_id"]
    before = _assistant_rows(sql)
    missing = str(uuid.uuid4())
    system = assistant_id_of("chat")
    cases: list[tuple[str, str, Any, int]] = [
        *[
            (method, f"/assistants/{missing}{suffix}", body, 404)
            for method, suffix, body in [
                ("GET", "", None),
                ("PATCH", "", {"name": "x"}),
                ("DELETE", "", None),
                ("POST", "/versions", {}),
                ("POST", "/latest", {"version": 1}),
                ("GET", "/graph", None),
                ("GET", "/schemas", None),
                ("GET", "/subgraphs", None),
                ("GET", "/subgraphs/review", None),
            ]
        ],
        ("GET", "/assistants/not-a-uuid", None, 404),
        ("POST", f"/assistants/{stored}/latest", {"version": 7}, 404),
        ("POST", "/runs", {"assistant_id": missing, "input": {}}, 404),
        ("PATCH", "/assistants/chat", {"name": "x"}, 409),
        ("PATCH", f"/assistants/{system}", {"metadata": {"a": 1}}, 409),
        ("DELETE", "/assistants/chat", None, 409),
        ("POST", f"/assistants/{system}/latest", {"version": 1}, 409),
        ("POST", "/assistants", {"graph_id": "nope"}, 422),
        ("PATCH", f"/assistants/{stored}", {"graph_id": "nope"}, 422),
        ("POST", "/assistants", {"graph_id": "chat", "config": [1]}, 422),
        ("POST", "/assistants", {"graph_id": "chat", "context": "bob"}, 422),
        ("POST", "/assistants", {"graph_id": "chat", "name": "a\u0000b"}, 422),
        ("POST", "/assistants", {"graph_id": "chat", "name": "x" * 1001}, 422),
        ("POST", "/assistants", {"graph_id": "chat", "colour": "red"}, 422),
        ("POST", "/assistants", {"graph_id": "chat", "if_exists": "replace"}, 422),
        ("POST", "/assistants", {"graph_id": "chat", "assistant_id": "nope"}, 422),
        ("PATCH", f"/assistants/{stored}", {"metadata": {"a\u0000": 1}}, 422),
        ("POST", "/assistants/search", {"sort_by": "colour"}, 422),
        ("POST", "/assistants/search", {"select": ["password"]}, 422),
        ("POST", "/assistants/search", {"limit": "5"}, 422),
        ("POST", "/assistants/count", {"metadata": [1]}, 422),
        ("POST", f"/assistants/{stored}/latest", {"version": "1"}, 422),
        ("POST", f"/assistants/{stored}/versions", {"limit": 0}, 422),
        ("GET", "/assistants/chat/graph?xray=0", None, 422),
        ("GET", "/assistants/chat/subgraphs?recurse=maybe", None, 422),
        ("DELETE", f"/assistants/{stored}?delete_threads=maybe", None, 422),
        ("PUT", f"/assistants/{stored}", None, 405),
    ]
    with httpx.Client(base_url=thread_server, headers=HEADERS, timeout=10) as http:
        for method, path, body, status in cases:
            answer = http.request(method, path, json=body)
            assert answer.status_code == status, (method, path, answer.text)
            error = answer.json()
            assert error["message"], error
            assert error["request_id"] == answer.headers["X-Request-ID"]
            assert "Traceback" not in answer.text
        unknown = http.post("/assistants", json={"graph_id": "nope"}).json()
        assert (unknown["error"], unknown["known_graphs"]) == ("unknown_graph", SERVED)
        refused = http.patch("/assistants/chat", json={}).json()
        assert refused["error"] == "system_assistant"
        assert "system assistants cannot be changed" in refused["message"]
    with pytest.raises(NotFoundError):
        await sdk.assistants.get(missing)
    with pytest.raises(ConflictError):
        await sdk.assistants.update("chat", name="mine")
    with pytest.raises(UnprocessableEntityError):
        await sdk.assistants.create("nope")
    assert _assistant_rows(sql) == before
    assert sql.execute("SELECT count(*) FROM lg_deploy.executions").fetchone() == (0,)

    gone = sql.execute(
        "INSERT INTO lg_deploy.assistants (graph_id, name) VALUES ('gone', 'orphan')"
        " RETURNING assistant_id::text"
    ).fetchone()
    assert gone is not None
    assert (await sdk.assistants.get(gone[0]))["graph_id"] == "gone"
    with pytest.raises(UnprocessableEntityError):
        await sdk.runs.create(None, gone[0], input={})
    with pytest.raises(UnprocessableEntityError):
        await sdk.assistants.get_schemas(gone[0])
    assert sql.execute("SELECT count(*) FROM lg_deploy.executions").fetchone() == (0,)


LOOK_ALIKE_SOURCE = """
from typing import Any


class Echo:
    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        return input


graph = Echo()
"""


@pytest.mark.req("ASSISTANTS")
def test_a_graph_that_cannot_be_drawn_is_a_422_and_its_schemas_are_null(tmp_path: Path) -> None:
    """A served look-alike graph (only `ainvoke`): its drawing is a 422 JSON error with the
    request id, its schemas are all null, it has no subgraphs, and it still runs."""
    (tmp_path / "look_alike.py").write_text(LOOK_ALIKE_SOURCE, encoding="utf-8")
    graphs = json.dumps({"plain": str(tmp_path / "look_alike.py") + ":graph"})
    settings = load_settings({"LG_DEPLOY_BACKEND": "memory", "LG_DEPLOY_GRAPHS": graphs})
    with TestClient(create_app(settings)) as http:
        drawn = http.get("/assistants/plain/graph")
        assert drawn.status_code == 422
        assert drawn.json()["message"] == "this graph cannot be drawn as JSON"
        assert drawn.json()["request_id"] == drawn.headers["X-Request-ID"]
        schemas = http.get("/assistants/plain/schemas").json()
        assert {k: v for k, v in schemas.items() if k != "graph_id"} == dict.fromkeys(
            ["input_schema", "output_schema", "state_schema", "config_schema", "context_schema"]
        )
        assert http.get("/assistants/plain/subgraphs").json() == {}
        ran = http.post("/runs/wait", json={"assistant_id": "plain", "input": {"n": 1}})
        assert ran.json() == {"n": 1}
