"""Graphs for the tests: the ids test queues claim, fake GraphRunners, the real registry fixture."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from lg_deploy.graphs import DEFAULT_GRAPHS, GraphOutcome, GraphRegistry, GraphRun
from lg_deploy.worker import GraphRunner
from tests.support.servers import running_server

# The graphs test queues claim: the shipped examples and the fakes the worker tests run.
TEST_GRAPHS = ("echo", "sleep", "fail", "pipeline", "anything", "boom", "own_timeout")

ODD_GRAPHS_SOURCE = """
from typing import Any

from langgraph.func import entrypoint


@entrypoint()
async def set_output(inputs: dict[str, Any]) -> Any:
    return {"tags": {"a", "b"}}


@entrypoint()
async def nan_output(inputs: dict[str, Any]) -> Any:
    return {"score": float("nan")}


@entrypoint()
async def nul_output(inputs: dict[str, Any]) -> Any:
    return {"text": "a\\x00b"}


@entrypoint()
async def own_timeout(inputs: dict[str, Any]) -> Any:
    raise TimeoutError("model call timed out")


@entrypoint()
async def nul_error(inputs: dict[str, Any]) -> Any:
    raise RuntimeError("bad\\x00byte")
"""
ODD_GRAPHS = {
    name: f"./odd_graphs.py:{name}"
    for name in ("set_output", "nan_output", "nul_output", "own_timeout", "nul_error")
}


@pytest.fixture
def registry(tmp_path: Path) -> GraphRegistry:
    """The real registry: the shipped examples plus graphs whose output is not JSON."""
    (tmp_path / "odd_graphs.py").write_text(ODD_GRAPHS_SOURCE, encoding="utf-8")
    return GraphRegistry({**DEFAULT_GRAPHS, **ODD_GRAPHS}, base_dir=tmp_path)


class GatedRunner:
    """A fake GraphRunner: records calls, and waits for `gate` before answering."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()

    async def execute(self, run: GraphRun) -> GraphOutcome:
        """Echo the input under "seen" once the gate is open; `boom` raises."""
        self.calls.append((run.graph_id, run.input or {}))
        self.started.set()
        await self.gate.wait()
        if run.graph_id == "boom":
            raise ValueError("fake failure")
        return GraphOutcome({"seen": run.input})


class StartRecorder:
    """Wraps a GraphRunner and counts the graph runs that have begun."""

    def __init__(self, inner: GraphRunner) -> None:
        self.inner = inner
        self.started = 0

    async def execute(self, run: GraphRun) -> GraphOutcome:
        """Count the run, then delegate it."""
        self.started += 1
        return await self.inner.execute(run)

    async def has_started(self) -> bool:
        """True once a graph run has begun (an awaitable predicate for wait_until)."""
        return self.started > 0


class Gate:
    """A GraphRunner that waits for its gate, then answers {"by": name}; records what happened."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.gate = asyncio.Event()
        self.started = 0
        self.returned = 0

    async def execute(self, run: GraphRun) -> GraphOutcome:
        """Wait for the gate, then return who ran it."""
        self.started += 1
        await self.gate.wait()
        self.returned += 1
        return GraphOutcome({"by": self.name})


THREAD_GRAPHS = {
    "chat": "lg_deploy.examples.chat:graph",
    "approval": "lg_deploy.examples.approval:graph",
    "echo": "lg_deploy.examples.echo:graph",
    "sleep": "lg_deploy.examples.sleep:graph",
    "fail": "lg_deploy.examples.fail:graph",
    "notes": "./thread_graphs.py:notes",
    "nested": "./thread_graphs.py:nested",
    "tokens": "./thread_graphs.py:tokens",
}


# The thread graphs plus one with subgraphs (its schemas readable on Python 3.11 too).
ASSISTANT_GRAPHS = {**THREAD_GRAPHS, "review": "lg_deploy.examples.review:graph"}


def thread_graphs_env(
    env: dict[str, str], folder: Path, graphs: dict[str, str] = THREAD_GRAPHS
) -> dict[str, str]:
    """`env` serving `graphs` (by default THREAD_GRAPHS: the conversation and approval
    examples, and the graphs of tests/support/thread_graphs.py) from a langgraph.json written
    in `folder`."""
    shutil.copy(Path(__file__).with_name("thread_graphs.py"), folder / "thread_graphs.py")
    config = folder / "langgraph.json"
    config.write_text(json.dumps({"graphs": graphs}), encoding="utf-8")
    return {**env, "LG_DEPLOY_CONFIG": str(config)}


THREAD_API_KEY = "thread-runs-key"


@pytest.fixture
def thread_server(worker_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A running `lg-deploy serve` with ASSISTANT_GRAPHS (the thread graphs and one with
    subgraphs), keyed THREAD_API_KEY; yields its URL."""
    keyed = {**worker_env, "LG_DEPLOY_API_KEY": THREAD_API_KEY}
    env = thread_graphs_env(keyed, tmp_path, ASSISTANT_GRAPHS)
    with running_server(env, tmp_path) as started:
        yield started.url


@pytest.fixture
async def sdk(thread_server: str) -> AsyncIterator[LangGraphClient]:
    """The official Python SDK's client of the thread server."""
    client = get_client(url=thread_server, api_key=THREAD_API_KEY)
    try:
        yield client
    finally:
        await client.http.client.aclose()
