"""A checkpointed run stopped after a node's writes were saved but before the step's checkpoint
(a worker killed, paused past its lease, or its connection dropped, in between) finishes on its
next attempt: the saved writes are applied, the nodes left run, nothing runs twice."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, cast

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.memory import InMemorySaver

from lg_deploy.graphs import GraphRegistry, GraphRun

STEPS_GRAPH = textwrap.dedent(
    """
    import operator
    from pathlib import Path
    from typing import Annotated, TypedDict

    from langgraph.graph import END, START, StateGraph


    class State(TypedDict, total=False):
        folder: str
        done: Annotated[list[str], operator.add]


    def ran(state: State, node: str) -> dict[str, list[str]]:
        with (Path(state["folder"]) / "ran.log").open("a") as log:
            log.write(node + "\\n")
        return {"done": [node]}


    async def hear(state: State) -> dict[str, list[str]]:
        return ran(state, "hear")


    async def answer(state: State) -> dict[str, list[str]]:
        return ran(state, "answer")


    builder = StateGraph(State)
    builder.add_node("hear", hear)
    builder.add_node("answer", answer)
    builder.add_edge(START, "hear")
    builder.add_edge("hear", "answer")
    builder.add_edge("answer", END)
    graph = builder.compile()
    """
)


class CheckpointLostOnce(InMemorySaver):
    """An in-memory saver whose checkpoint of step `step` fails once: that step's task writes
    are saved, its checkpoint is not, as when the process dies between the two."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.failing_step: int | None = step

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Save it, unless it is the step to lose."""
        if metadata.get("step") == self.failing_step:
            self.failing_step = None
            raise ConnectionError("the connection dropped before the checkpoint was saved")
        return await super().aput(config, checkpoint, metadata, new_versions)


def node_runs(folder: Path) -> list[str]:
    """The nodes of the steps graph that ran, in order."""
    return (folder / "ran.log").read_text().splitlines()


async def attempt(registry: GraphRegistry, folder: Path, run_id: str, on_thread: bool) -> Any:
    """One attempt of a run of the steps graph (on thread-1, or thread-less); its output."""
    graph_input = {"folder": str(folder)}
    if not on_thread:
        return await registry.run("steps", graph_input, thread_id=run_id)
    run = GraphRun("steps", graph_input, run_id=run_id, thread_id="thread-1", on_thread=True)
    return (await registry.execute(run)).output


@pytest.mark.req("FAULT-RESUME", "THREAD-RUNS")
@pytest.mark.parametrize("on_thread", [True, False], ids=["on-a-thread", "thread-less"])
@pytest.mark.parametrize("lost_step", [1, 2], ids=["after-hear", "after-answer"])
async def test_a_run_whose_step_checkpoint_was_lost_finishes_without_running_a_node_twice(
    tmp_path: Path, on_thread: bool, lost_step: int
) -> None:
    """Writes saved, checkpoint lost: the next attempt applies them, runs only what is left and
    leaves the thread at its end, so the thread's next run starts from the whole state."""
    (tmp_path / "steps.py").write_text(STEPS_GRAPH)
    saver = CheckpointLostOnce(lost_step)
    spec = {"steps": "./steps.py:graph"}
    if on_thread:
        registry = GraphRegistry(spec, base_dir=tmp_path, thread_checkpointer=saver)
    else:
        registry = GraphRegistry(spec, base_dir=tmp_path, checkpointer=saver)
    with pytest.raises(ConnectionError):
        await attempt(registry, tmp_path, "run-1", on_thread)
    output = await attempt(registry, tmp_path, "run-1", on_thread)
    assert output["done"] == ["hear", "answer"]
    assert node_runs(tmp_path) == ["hear", "answer"]
    graph = await (registry.thread_graph("steps") if on_thread else registry.get("steps"))
    thread = {"configurable": {"thread_id": "thread-1" if on_thread else "run-1"}}
    latest = await cast(Any, graph).aget_state(thread)
    assert (latest.values["done"], latest.tasks) == (["hear", "answer"], ())
    if on_thread:
        output = await attempt(registry, tmp_path, "run-2", on_thread)
        assert output["done"] == ["hear", "answer", "hear", "answer"]
