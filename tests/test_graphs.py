"""The graph registry, the shipped example graphs and the JSON conversion of graph output."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import textwrap
from pathlib import Path
from typing import Any

import pydantic
import pytest

from lg_deploy.errors import GraphLoadError, GraphOutputError, UnknownGraph
from lg_deploy.graphs import (
    DEFAULT_GRAPHS,
    GraphRegistry,
    to_json_object,
)

GRAPH_KINDS_SOURCE = """
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, TypedDict

from langgraph.func import entrypoint
from langgraph.graph import START, StateGraph


class State(TypedDict):
    n: int


async def bump(state: State) -> State:
    return {"n": state["n"] + 1}


builder = StateGraph(State)
builder.add_node("bump", bump)
builder.add_edge(START, "bump")
compiled = builder.compile()
not_a_graph = 42


def _count_call() -> None:
    with Path(__file__).with_name("calls.log").open("a") as log:
        log.write("call\\n")


def sync_factory():
    _count_call()
    return builder.compile()


async def async_factory():
    _count_call()
    await asyncio.sleep(0.01)  # lets a concurrent first get() reach the loading lock
    return builder


def config_factory(config):
    @entrypoint()
    async def seen(inputs: dict[str, Any]) -> dict[str, Any]:
        return {"n": inputs["n"] + 1, "factory_config": config}

    return seen


def broken_factory():
    raise ValueError("no model configured")


@entrypoint()
async def answer(inputs: dict[str, Any]) -> int:
    return 42
"""


def write_graphs_file(directory: Path, name: str = "graphs.py") -> Path:
    """Write the module with every kind of graph value into `directory`."""
    path = directory / name
    path.write_text(textwrap.dedent(GRAPH_KINDS_SOURCE))
    return path


def factory_calls(directory: Path) -> int:
    """How many times a counting factory of the graphs file in `directory` ran."""
    log = directory / "calls.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


# --- example graphs ---------------------------------------------------------------------------


@pytest.mark.req("GRAPH-EXAMPLES")
@pytest.mark.parametrize("payload", [{}, {"a": 1, "b": [1, 2]}, {"x": {"y": None}, "z": "t"}])
async def test_echo_returns_its_input_exactly(payload: dict[str, Any]) -> None:
    """The echo example returns any JSON object unchanged."""
    assert await GraphRegistry(DEFAULT_GRAPHS).run("echo", payload) == payload


@pytest.mark.req("GRAPH-EXAMPLES")
async def test_sleep_reports_the_seconds_slept() -> None:
    """The sleep example waits the given seconds and returns them."""
    assert await GraphRegistry(DEFAULT_GRAPHS).run("sleep", {"seconds": 0.01}) == {"slept": 0.01}


@pytest.mark.req("GRAPH-EXAMPLES")
async def test_sleep_is_cancellable() -> None:
    """Cancelling a long sleep example run ends it at once."""
    graph = await GraphRegistry(DEFAULT_GRAPHS).get("sleep")
    task = asyncio.create_task(graph.ainvoke({"seconds": 60}))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=1)


@pytest.mark.req("GRAPH-EXAMPLES")
@pytest.mark.parametrize(
    ("payload", "message"), [({}, "example failure"), ({"message": "boom"}, "boom")]
)
async def test_fail_raises_runtime_error(payload: dict[str, Any], message: str) -> None:
    """The fail example raises RuntimeError with the given or default message."""
    with pytest.raises(RuntimeError) as raised:
        await GraphRegistry(DEFAULT_GRAPHS).run("fail", payload)
    assert str(raised.value) == message


@pytest.mark.req("GRAPH-EXAMPLES")
async def test_pipeline_runs_every_node_in_sequence() -> None:
    """The pipeline example splits, counts and summarises, returning every key."""
    output = await GraphRegistry(DEFAULT_GRAPHS).run("pipeline", {"text": "a b c"})
    assert output == {
        "text": "a b c",
        "words": ["a", "b", "c"],
        "count": 3,
        "summary": "3 words: a b c",
    }


@pytest.mark.req("GRAPH-EXAMPLES")
def test_default_graphs_all_load() -> None:
    """Every shipped example spec imports and is a graph."""
    registry = GraphRegistry(DEFAULT_GRAPHS)
    registry.load_all()
    assert registry.names() == ["approval", "chat", "echo", "fail", "pipeline", "sleep"]


# --- registry -----------------------------------------------------------------------------------


@pytest.mark.req("GRAPH-REGISTRY")
@pytest.mark.parametrize(
    ("attr", "expected"),
    [
        ("builder", {"n": 2}),
        ("compiled", {"n": 2}),
        ("sync_factory", {"n": 2}),
        ("async_factory", {"n": 2}),
        ("config_factory", {"n": 2, "factory_config": {"configurable": {}}}),
    ],
)
async def test_file_spec_loads_every_kind_of_graph_value(
    tmp_path: Path, attr: str, expected: dict[str, Any]
) -> None:
    """A './file.py:attr' spec relative to base_dir loads a StateGraph, graph or factory."""
    write_graphs_file(tmp_path)
    registry = GraphRegistry({"g": f"./graphs.py:{attr}"}, base_dir=tmp_path)
    assert await registry.run("g", {"n": 1}) == expected


@pytest.mark.req("GRAPH-REGISTRY")
async def test_absolute_file_spec_ignores_base_dir(tmp_path: Path) -> None:
    """An absolute file path in a spec is used as is."""
    path = write_graphs_file(tmp_path)
    registry = GraphRegistry({"g": f"{path}:compiled"}, base_dir=tmp_path / "elsewhere")
    assert await registry.run("g", {"n": 5}) == {"n": 6}


@pytest.mark.req("GRAPH-REGISTRY")
async def test_run_wraps_non_dict_output(tmp_path: Path) -> None:
    """A graph output that is not an object is stored as {"value": output}."""
    write_graphs_file(tmp_path)
    registry = GraphRegistry({"g": "./graphs.py:answer"}, base_dir=tmp_path)
    assert await registry.run("g", {}) == {"value": 42}


@pytest.mark.req("GRAPH-REGISTRY")
async def test_unknown_graph_lists_known_names() -> None:
    """Asking for an unregistered name raises UnknownGraph listing the known names."""
    with pytest.raises(UnknownGraph) as raised:
        await GraphRegistry(DEFAULT_GRAPHS).get("nope")
    assert raised.value.known == ["approval", "chat", "echo", "fail", "pipeline", "sleep"]
    assert "approval, chat, echo, fail, pipeline, sleep" in str(raised.value)


@pytest.mark.req("GRAPH-REGISTRY")
@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("./missing.py:graph", "not found"),
        ("./graphs.py:nothing", "has no attribute 'nothing'"),
        ("./graphs.py:not_a_graph", "int is not a compiled graph"),
        ("./graphs.py:broken_factory", "ValueError: no model configured"),
        ("./syntax_error.py:graph", "SyntaxError"),
        ("no_such_package_xyz.module:graph", "ModuleNotFoundError"),
        ("lg_deploy.examples.echo", "is not './file.py:attr'"),
    ],
)
async def test_broken_spec_raises_load_error_naming_it(
    tmp_path: Path, spec: str, reason: str
) -> None:
    """A spec that cannot be imported or is not a graph gives GraphLoadError naming it."""
    write_graphs_file(tmp_path)
    (tmp_path / "syntax_error.py").write_text("def graph(:\n")
    registry = GraphRegistry({"g": spec}, base_dir=tmp_path)
    with pytest.raises(GraphLoadError) as raised:
        await registry.get("g")
    assert repr(spec) in str(raised.value)
    assert reason in str(raised.value)


@pytest.mark.req("GRAPH-REGISTRY")
async def test_graph_is_loaded_once_across_runs(tmp_path: Path) -> None:
    """Two runs and two concurrent first gets call the factory only once."""
    write_graphs_file(tmp_path)
    registry = GraphRegistry({"g": "./graphs.py:async_factory"}, base_dir=tmp_path)
    first, second = await asyncio.gather(registry.get("g"), registry.get("g"))
    await registry.run("g", {"n": 1})
    await registry.run("g", {"n": 2})
    assert first is second
    assert factory_calls(tmp_path) == 1


@pytest.mark.req("GRAPH-REGISTRY")
async def test_load_all_builds_sync_factories_once_and_defers_async_ones(tmp_path: Path) -> None:
    """load_all calls a sync factory once for good and leaves an async factory to first use."""
    write_graphs_file(tmp_path)
    specs = {"sync": "./graphs.py:sync_factory", "async": "./graphs.py:async_factory"}
    registry = GraphRegistry(specs, base_dir=tmp_path)
    registry.load_all()
    assert factory_calls(tmp_path) == 1
    await registry.run("sync", {"n": 1})
    assert factory_calls(tmp_path) == 1
    await registry.run("async", {"n": 1})
    assert factory_calls(tmp_path) == 2


@pytest.mark.req("GRAPH-REGISTRY")
def test_load_all_fails_on_a_broken_spec(tmp_path: Path) -> None:
    """load_all raises GraphLoadError for the first spec that cannot load."""
    write_graphs_file(tmp_path)
    registry = GraphRegistry(
        {"good": "./graphs.py:compiled", "bad": "./graphs.py:not_a_graph"}, base_dir=tmp_path
    )
    with pytest.raises(GraphLoadError, match="not_a_graph"):
        registry.load_all()


# --- output conversion ------------------------------------------------------------------------


class Verdict(pydantic.BaseModel):
    """A pydantic value a graph might return."""

    label: str
    score: float


@dataclasses.dataclass
class Point:
    """A dataclass value a graph might return."""

    x: int
    y: int


@pytest.mark.req("WORKER-OUTPUT")
def test_dict_output_is_kept() -> None:
    """A JSON-ready dict comes back equal."""
    output = {"a": 1, "b": [True, None, 1.5, "s"], "c": {"d": {}}}
    assert to_json_object(output) == output


@pytest.mark.req("WORKER-OUTPUT")
@pytest.mark.parametrize("value", [42, "text", [1, 2], None, 1.5])
def test_non_dict_output_is_wrapped(value: Any) -> None:
    """Anything other than a dict is wrapped as {"value": value}."""
    assert to_json_object(value) == {"value": value}


@pytest.mark.req("WORKER-OUTPUT")
def test_pydantic_models_and_dataclasses_are_converted() -> None:
    """Pydantic models and dataclasses inside the output become plain JSON objects."""
    output = {"verdict": Verdict(label="ok", score=0.5), "point": Point(1, 2)}
    assert to_json_object(output) == {
        "verdict": {"label": "ok", "score": 0.5},
        "point": {"x": 1, "y": 2},
    }
    assert to_json_object(Verdict(label="ok", score=1)) == {"value": {"label": "ok", "score": 1.0}}


@pytest.mark.req("WORKER-OUTPUT")
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"tags": {1, 2}}, "Object of type set is not JSON serializable"),
        ({"score": math.nan}, "NaN and Infinity are not valid JSON"),
        ({"score": -math.inf}, "NaN and Infinity are not valid JSON"),
        ({"verdict": Verdict(label="x", score=math.nan)}, "NaN and Infinity are not valid JSON"),
        ({"text": "a\x00b"}, "contains a NUL character"),
        ({"a\x00": 1}, "contains a NUL character"),
        ({"deep": [{"x": ["\x00"]}]}, "contains a NUL character"),
        ("a\x00b", "contains a NUL character"),
        ({"text": "\ud800"}, "contains a surrogate"),
    ],
)
def test_unstorable_output_raises_output_error(value: Any, reason: str) -> None:
    """Output jsonb cannot store raises GraphOutputError with a short reason."""
    with pytest.raises(GraphOutputError) as raised:
        to_json_object(value)
    assert str(raised.value) == f"graph output is not JSON-serialisable: {reason}"


@pytest.mark.req("GRAPH-REGISTRY")
async def test_graph_file_can_import_its_siblings(tmp_path: Path) -> None:
    """A graph file imports a module next to it, as with the LangGraph CLI's dependencies ["."]."""
    package = tmp_path / "sibling_helpers_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("GREETING = 'hello from a sibling'\n")
    (tmp_path / "agent.py").write_text(
        "from langgraph.func import entrypoint\n"
        "from sibling_helpers_pkg import GREETING\n\n"
        "@entrypoint()\n"
        "async def graph(inputs: dict) -> dict:\n"
        "    return {'greeting': GREETING}\n"
    )
    registry = GraphRegistry({"agent": "./agent.py:graph"}, base_dir=tmp_path)
    assert await registry.run("agent", {}) == {"greeting": "hello from a sibling"}
