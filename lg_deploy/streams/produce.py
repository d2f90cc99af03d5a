"""Running a graph with its stream recorded: astream (or astream_events) instead of ainvoke."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lg_deploy.models import StreamMode
from lg_deploy.streams.encode import EVENTS, StreamEncoder, dumps, split_chunk
from lg_deploy.streams.sink import EventSink

INTERRUPT = "__interrupt__"  # where LangGraph's updates report interrupts (graphs.INTERRUPT_KEY)


@dataclass
class Streaming:
    """Where one run's stream goes, how its chunks become events, and what `ainvoke` would
    have returned: the root graph's last values, with the interrupts its updates reported."""

    sink: EventSink
    encoder: StreamEncoder
    latest: Any = None
    interrupts: list[Any] = field(default_factory=list)

    @classmethod
    def build(
        cls, sink: EventSink | None, modes: Sequence[StreamMode], subgraphs: bool
    ) -> Streaming | None:
        """None when the run streams nothing."""
        if sink is None or not modes:
            return None
        return cls(sink, StreamEncoder(modes, subgraphs))

    def chunk(self, chunk: Any) -> None:
        """Record one astream chunk, and note the root graph's values and interrupts."""
        namespace, mode, data = split_chunk(chunk, self.encoder.subgraphs)
        for event, text in self.encoder.encode(namespace, mode, data):
            self.sink.emit(event, text)
        if namespace:
            return
        if mode == "values":
            self.latest = data
        elif mode == "updates" and isinstance(data, dict) and INTERRUPT in data:
            self.interrupts.extend(data[INTERRUPT])

    def result(self) -> Any:
        """What `ainvoke` returns for the chunks seen (LangGraph's own rule)."""
        if not self.interrupts:
            return self.latest
        if isinstance(self.latest, dict):
            return {**self.latest, INTERRUPT: self.interrupts}
        return {INTERRUPT: self.interrupts}


async def invoke(
    graph: Any, input: Any, config: Any, stream: Streaming | None, **kwargs: Any
) -> Any:
    """What `graph.ainvoke` returns (the last values, with any interrupts), streaming the
    requested modes to `stream` on the way."""
    if stream is None or not callable(getattr(graph, "astream", None)):
        return await graph.ainvoke(input, config=config, **kwargs)
    encoder = stream.encoder
    options = {"stream_mode": encoder.graph_modes, "subgraphs": encoder.subgraphs, **kwargs}
    if encoder.wants_events:
        root: str | None = None
        async for event in graph.astream_events(input, config, version="v2", **options):
            stream.sink.emit(EVENTS, dumps(event))
            root = root or event.get("run_id")
            if event.get("event") == "on_chain_stream" and event.get("run_id") == root:
                stream.chunk(event["data"]["chunk"])
    else:
        async for chunk in graph.astream(input, config, **options):
            stream.chunk(chunk)
    return stream.result()
