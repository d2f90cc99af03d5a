"""The graph registry: names to LangGraph specs, loaded lazily, compiled once, run to JSON."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, cast

import pydantic
import pydantic_core
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.store.base import BaseStore
from langgraph.types import Command, Send

from lg_deploy.db import jsonb
from lg_deploy.errors import GraphLoadError, GraphOutputError, UnknownGraph
from lg_deploy.models import StreamMode
from lg_deploy.streams.produce import Streaming, invoke
from lg_deploy.streams.sink import EventSink

INTERRUPT_KEY = "__interrupt__"
# The configurable key naming the attempt a run's checkpoint writes belong to (lg_deploy
# .checkpoints.FencedPostgresSaver checks it); "__" keeps it out of checkpoint metadata.
FENCE_KEY = "__lg_deploy_attempt"  # where LangGraph's output lists the interrupts it stopped at
DEFAULT_GRAPHS: dict[str, str] = {
    "echo": "lg_deploy.examples.echo:graph",
    "sleep": "lg_deploy.examples.sleep:graph",
    "fail": "lg_deploy.examples.fail:graph",
    "pipeline": "lg_deploy.examples.pipeline:graph",
    "chat": "lg_deploy.examples.chat:graph",
    "approval": "lg_deploy.examples.approval:graph",
}


class CompiledGraph(Protocol):
    """What the registry hands out: a compiled LangGraph graph (a `Pregel`) or a look-alike."""

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        """Run the graph on one input and return its output."""


@dataclass(frozen=True)
class GraphRun:
    """What one execution asks of its graph.

    `thread_id` is the checkpoint thread: the run's thread, or its own id when thread-less.
    A run `on_thread` (or with config, context or breakpoints) always runs checkpointed.
    """

    graph_id: str
    input: dict[str, Any] | None
    run_id: str
    thread_id: str
    on_thread: bool = False
    command: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    interrupt_before: list[str] | None = None
    interrupt_after: list[str] | None = None
    attempt: int = 0  # with worker_id: the attempt whose checkpoint writes are fenced
    worker_id: str | None = None
    stream_mode: tuple[StreamMode, ...] = ()
    stream_subgraphs: bool = False
    stream: EventSink | None = field(default=None, compare=False)  # where the stream goes

    @property
    def checkpointed(self) -> bool:
        """True when the run needs the thread checkpointer whatever the settings say."""
        return bool(
            self.on_thread
            or self.config
            or self.context
            or self.interrupt_before
            or self.interrupt_after
        )


@dataclass(frozen=True)
class GraphOutcome:
    """A graph run's end: its output, and, when it stopped at an interrupt or breakpoint, the
    pending interrupts by task id (`interrupted`)."""

    output: dict[str, Any]
    interrupts: dict[str, Any] | None = None

    @property
    def interrupted(self) -> bool:
        """True when the graph stopped before its end, waiting for a resume."""
        return self.interrupts is not None


class GraphRegistry:
    """Graph names mapped to `langgraph.json` specs; each graph is loaded and compiled once.

    `checkpointer` (optional) saves thread-less runs' steps; `thread_checkpointer` holds the
    threads' checkpoints (runs on a thread, and runs given config or context). `store` (optional)
    is given to every graph, as LangGraph's server does: get_store() in a node returns it.
    """

    def __init__(
        self,
        specs: Mapping[str, str],
        *,
        base_dir: Path | None = None,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        thread_checkpointer: BaseCheckpointSaver[Any] | None = None,
        store: BaseStore | None = None,
    ) -> None:
        self._specs = dict(specs)
        self._base_dir = base_dir if base_dir is not None else Path.cwd()
        self._checkpointer = checkpointer
        self._thread_checkpointer = thread_checkpointer or checkpointer
        self._store = store
        self._graphs: dict[str, CompiledGraph] = {}
        self._thread_graphs: dict[str, CompiledGraph] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def names(self) -> list[str]:
        """The registered graph names, sorted."""
        return sorted(self._specs)

    @property
    def thread_saver(self) -> BaseCheckpointSaver[Any] | None:
        """The checkpointer holding the threads' checkpoints (None: runs on a thread fail)."""
        return self._thread_checkpointer

    async def get(self, graph_id: str) -> CompiledGraph:
        """The compiled graph named `graph_id`, loaded on first use; concurrent callers wait."""
        if graph_id in self._graphs:
            return self._graphs[graph_id]
        spec = self._spec(graph_id)
        async with self._locks.setdefault(graph_id, asyncio.Lock()):
            if graph_id not in self._graphs:
                value = _import_spec(spec, self._base_dir)
                if callable(value) and not _is_graph(value):
                    with _load_step(spec, "factory failed"):
                        value = _call_factory(value)
                        if inspect.isawaitable(value):
                            value = await value
                self._graphs[graph_id] = self._with_checkpointer(_as_graph(spec, value))
        return self._graphs[graph_id]

    def load_all(self) -> None:
        """Load every spec now, raising GraphLoadError on the first broken one.

        Graphs and sync factories are built and cached; an async factory is only imported and
        checked to be callable, since it needs the event loop: it runs on first `get`.
        """
        for graph_id in self.names():
            spec = self._specs[graph_id]
            value = _import_spec(spec, self._base_dir)
            if graph_id in self._graphs or inspect.iscoroutinefunction(value):
                continue
            if callable(value) and not _is_graph(value):
                with _load_step(spec, "factory failed"):
                    value = _call_factory(value)
                if inspect.iscoroutine(value):  # a sync function returning a coroutine
                    value.close()
                    continue
            self._graphs[graph_id] = self._with_checkpointer(_as_graph(spec, value))

    async def run(
        self,
        graph_id: str,
        input: dict[str, Any],
        *,
        thread_id: str | None = None,
        stream: Streaming | None = None,
    ) -> dict[str, Any]:
        """Run graph `graph_id` on `input` as thread `thread_id`; output as a jsonb-ready object.

        With a checkpointer, every step is saved before the next starts, and a thread that
        already has checkpoints resumes after its last saved step instead of starting over.
        """
        graph = await self.get(graph_id)
        config = {"configurable": {"thread_id": thread_id}} if thread_id else None
        if self._checkpointer is None or config is None:
            return to_json_object(await invoke(graph, input, config, stream))
        snapshot = await cast(Any, graph).aget_state(config)
        if _unfinished(snapshot):
            result = await invoke(graph, None, config, stream, durability="sync")
        elif snapshot.created_at is not None:  # finished before its outcome could be stored
            result = snapshot.values
        else:
            result = await invoke(graph, input, config, stream, durability="sync")
        return to_json_object(result)

    async def execute(self, run: GraphRun) -> GraphOutcome:
        """Run one execution's graph: thread-less as `run` does, else on its thread's checkpoints.

        A run already begun (its own checkpoint is the thread's latest: a retry, a crash) goes
        on from there; else it starts from `command` or `input` (None: from the last checkpoint).
        """
        stream = Streaming.build(run.stream, run.stream_mode, run.stream_subgraphs)
        if not run.checkpointed:
            output = await self.run(
                run.graph_id, run.input or {}, thread_id=run.thread_id, stream=stream
            )
            interrupts = None
            if INTERRUPT_KEY in output and self._checkpointer is not None:
                graph = await self.get(run.graph_id)
                interrupts = await _pending_interrupts(graph, run.thread_id)
            return GraphOutcome(output, interrupts)
        graph = await self.thread_graph(run.graph_id)
        thread = {"configurable": {"thread_id": run.thread_id}}
        latest = await cast(Any, graph).aget_state(thread)
        config = _run_config(run)
        if (latest.metadata or {}).get("run_id") == run.run_id:  # this run began before
            if _unfinished(latest):
                result = await invoke(graph, None, config, stream, durability="sync")
            else:
                result = latest.values
        else:
            result = await invoke(
                graph,
                _graph_input(run),
                config,
                stream,
                durability="sync",
                context=run.context or None,
                interrupt_before=_nodes(run.interrupt_before),
                interrupt_after=_nodes(run.interrupt_after),
            )
        return GraphOutcome(to_json_object(result), await _pending_interrupts(graph, run.thread_id))

    async def thread_graph(self, graph_id: str) -> CompiledGraph:
        """The graph compiled with the thread checkpointer."""
        if graph_id not in self._thread_graphs:
            graph = await self.get(graph_id)
            if self._thread_checkpointer is not self._checkpointer:
                graph = _with_saver(graph, self._thread_checkpointer)
            self._thread_graphs[graph_id] = graph
        return self._thread_graphs[graph_id]

    async def has_checkpoint(self, thread_id: str, checkpoint_id: str) -> bool:
        """True when the thread has a checkpoint with this id (in its root namespace)."""
        saver = self._thread_checkpointer
        if saver is None:
            return False
        configurable = {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}
        return await saver.aget_tuple({"configurable": configurable}) is not None

    def _with_checkpointer(self, graph: CompiledGraph) -> CompiledGraph:
        graph = _with_store(graph, self._store)
        return graph if self._checkpointer is None else _with_saver(graph, self._checkpointer)

    def _spec(self, graph_id: str) -> str:
        try:
            return self._specs[graph_id]
        except KeyError:
            raise UnknownGraph(graph_id, self._specs) from None


def _with_saver(graph: CompiledGraph, saver: BaseCheckpointSaver[Any] | None) -> CompiledGraph:
    """A copy of `graph` saving its checkpoints with `saver`."""
    if saver is None:
        raise GraphLoadError("runs on a thread need a checkpointer; none is configured")
    copy = getattr(graph, "copy", None)
    if copy is None:
        raise GraphLoadError(f"{type(graph).__name__} cannot take a checkpointer")
    return cast(CompiledGraph, copy(update={"checkpointer": saver}))


def _with_store(graph: CompiledGraph, store: BaseStore | None) -> CompiledGraph:
    """A copy of `graph` given `store` (over any it was compiled with); a look-alike with no
    `copy` is kept as it is."""
    copy = getattr(graph, "copy", None)
    if store is None or copy is None:
        return graph
    return cast(CompiledGraph, copy(update={"store": store}))


def _unfinished(snapshot: Any) -> bool:
    """True while a checkpoint has a step to complete: tasks left to run, or tasks whose writes
    were saved before the step's checkpoint was (the process died in between). LangGraph's
    `next` leaves the latter out, so an empty `next` does not mean the run finished; invoking
    with None applies those writes without running their tasks again, then goes on."""
    return bool(snapshot.tasks)


def _run_config(run: GraphRun) -> dict[str, Any]:
    """The LangGraph config of a run: its own, with the thread, and run_id in the metadata (so
    its checkpoints say which run wrote them)."""
    config = dict(run.config)
    config["configurable"] = {**config.get("configurable", {}), "thread_id": run.thread_id}
    if run.worker_id is not None:  # the saver refuses its writes once another attempt holds it
        fence = {"execution_id": run.run_id, "attempt": run.attempt, "worker_id": run.worker_id}
        config["configurable"][FENCE_KEY] = fence
    config["metadata"] = {
        **config.get("metadata", {}),
        "run_id": run.run_id,
        "graph_id": run.graph_id,
        "thread_id": run.thread_id,
    }
    return config


def _graph_input(run: GraphRun) -> Any:
    """What the run starts with: a LangGraph Command, its input, or None (go on)."""
    if run.command is None:
        return run.input
    command = run.command
    goto = command.get("goto")
    if isinstance(goto, dict):
        goto = Send(goto["node"], goto.get("input"))
    elif isinstance(goto, list):
        goto = [Send(g["node"], g.get("input")) if isinstance(g, dict) else g for g in goto]
    update = command.get("update")
    if isinstance(update, list):
        update = [tuple(pair) for pair in update]
    return Command(
        resume=command.get("resume"),
        update=update,
        goto=goto if goto is not None else (),
    )


def _nodes(names: list[str] | None) -> Any:
    """Breakpoints as LangGraph takes them: "*" for every node."""
    if names is None:
        return None
    return "*" if "*" in names else names


async def _pending_interrupts(graph: CompiledGraph, thread_id: str) -> dict[str, Any] | None:
    """None when the thread's latest checkpoint has nothing left to run; else its interrupts by
    task id ({} at a breakpoint), as the platform shows them on a thread."""
    snapshot = await cast(Any, graph).aget_state({"configurable": {"thread_id": thread_id}})
    if not snapshot.next:
        return None
    return to_json_object(
        {
            task.id: [{"id": item.id, "value": item.value} for item in task.interrupts]
            for task in snapshot.tasks
            if task.interrupts
        }
    )


@contextmanager
def _load_step(spec: str, action: str) -> Iterator[None]:
    """Turn any error of one loading step into a GraphLoadError naming the spec."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, GraphLoadError):
            raise
        detail = f"{action}: {type(exc).__name__}: {exc}"
        raise GraphLoadError(f"graph spec {spec!r}: {detail}") from exc


def _import_spec(spec: str, base_dir: Path) -> object:
    """The object a `./file.py:attr` or `package.module:attr` spec names."""
    location, _, attr = spec.rpartition(":")
    if not location or not attr:
        raise GraphLoadError(f"graph spec {spec!r} is not './file.py:attr' or 'module:attr'")
    if location.endswith(".py") or "/" in location or "\\" in location:
        _make_importable(base_dir)
        module = _import_file(spec, base_dir / location)
    else:
        with _load_step(spec, f"cannot import {location}"):
            module = importlib.import_module(location)
    if not hasattr(module, attr):
        raise GraphLoadError(f"graph spec {spec!r}: {location} has no attribute {attr!r}")
    return cast(object, getattr(module, attr))


def _make_importable(folder: Path) -> None:
    """Let graph files import modules under `folder`, like LangGraph's `dependencies: ["."]`."""
    entry = str(folder.resolve())
    if entry not in sys.path:
        sys.path.append(entry)


def _import_file(spec: str, path: Path) -> ModuleType:
    """The module at `path`, executed once under a name derived from its absolute path."""
    path = path.resolve()
    if not path.is_file():
        raise GraphLoadError(f"graph spec {spec!r}: file {path} not found")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    module_name = f"_lg_deploy_graph_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise GraphLoadError(f"graph spec {spec!r}: {path} is not a Python module")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before running so dataclasses and type hints can find their own module.
    sys.modules[module_name] = module
    try:
        with _load_step(spec, f"cannot import {path}"):
            module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _is_graph(value: object) -> bool:
    return isinstance(value, StateGraph) or callable(getattr(value, "ainvoke", None))


def _call_factory(factory: Any) -> object:
    """What `factory` returns, given a fresh config when it has a required positional parameter."""
    parameters = inspect.signature(factory).parameters.values()
    takes_config = any(
        p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        for p in parameters
    )
    return cast(object, factory({"configurable": {}}) if takes_config else factory())


def _as_graph(spec: str, value: object) -> CompiledGraph:
    """`value` as a runnable graph, compiling a StateGraph."""
    if isinstance(value, StateGraph):
        with _load_step(spec, "cannot compile StateGraph"):
            return cast(CompiledGraph, value.compile())
    if _is_graph(value):
        return cast(CompiledGraph, value)
    raise GraphLoadError(
        f"graph spec {spec!r}: {type(value).__name__} is not a compiled graph,"
        " a StateGraph or a factory returning one"
    )


def to_json_object(value: Any) -> dict[str, Any]:
    """`value` as a plain JSON object jsonb accepts: a dict is kept, anything else is wrapped.

    Pydantic models and dataclasses are converted; any other non-JSON value (a set, NaN, a NUL
    character, ...) raises GraphOutputError rather than being silently changed.
    """
    wrapped = value if isinstance(value, dict) else {"value": value}
    try:
        plain = json.loads(json.dumps(wrapped, allow_nan=False, default=_jsonable_record))
    except (TypeError, ValueError, RecursionError) as exc:
        reason = str(exc)
        if isinstance(exc, RecursionError):
            reason = "nested too deeply"
        elif reason.startswith("Out of range float values"):
            reason = "NaN and Infinity are not valid JSON"
        raise GraphOutputError(f"graph output is not JSON-serialisable: {reason}") from exc
    if (char := jsonb.unstorable_char(plain)) is not None:
        problem = "contains a NUL character" if char == jsonb.NUL else "contains a surrogate"
        raise GraphOutputError(f"graph output is not JSON-serialisable: {problem}")
    return cast(dict[str, Any], plain)


def _jsonable_record(value: object) -> object:
    """`json.dumps` fallback: pydantic models and dataclass instances become plain data."""
    if isinstance(value, pydantic.BaseModel) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    ):
        return cast(object, pydantic_core.to_jsonable_python(value))
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
