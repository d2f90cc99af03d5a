"""LangGraph stream chunks as the platform's SSE events: names and compact JSON text."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
import uuid
from collections.abc import Sequence
from typing import Any

import pydantic
from langchain_core.messages import BaseMessage, BaseMessageChunk, message_chunk_to_message

from lg_deploy.models import StreamMode

EVENTS = "events"
# The requested mode -> the LangGraph stream mode that feeds it.
GRAPH_MODE: dict[str, str] = {"messages-tuple": "messages"}
MESSAGES_TUPLE = "messages-tuple"
LEGACY_MESSAGES = "messages"


def dumps(value: Any) -> str:
    """Compact JSON of a stream chunk; objects JSON cannot hold become their closest JSON
    (messages and models their fields, dataclasses theirs, anything else its str)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_plain)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: escaped, the text stays valid UTF-8
        text = json.dumps(value, separators=(",", ":"), default=_plain)
    return text


def _plain(value: Any) -> Any:
    """`json.dumps` fallback for what a graph streams."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "_asdict"):
        return value._asdict()
    return str(value)


class StreamEncoder:
    """Turns one run's LangGraph chunks into (event, data) pairs for the modes it asked for.

    `messages-tuple` is sent as `messages` [chunk, metadata] per token; the legacy `messages`
    as `messages/metadata` once per message, then `messages/partial` (the message so far) or
    `messages/complete`. Subgraph chunks are named `mode|ns1|ns2`.
    """

    def __init__(self, requested: Sequence[StreamMode], subgraphs: bool = False) -> None:
        self.requested = list(dict.fromkeys(requested))
        self.subgraphs = subgraphs
        self._seen: dict[str, BaseMessageChunk | None] = {}

    @property
    def wants_events(self) -> bool:
        """True when astream_events output is asked for (the `events` mode)."""
        return EVENTS in self.requested

    @property
    def graph_modes(self) -> list[str]:
        """The LangGraph stream modes to run with: what is asked, and `values` and `updates`
        for the result (as `ainvoke` takes them)."""
        modes = [GRAPH_MODE.get(mode, mode) for mode in self.requested if mode != EVENTS]
        return list(dict.fromkeys(["values", "updates", *modes]))

    def encode(self, namespace: tuple[str, ...], mode: str, data: Any) -> list[tuple[str, str]]:
        """The events one chunk makes (none for a mode only run for the result)."""
        if namespace and not self.subgraphs:
            return []
        suffix = "".join(f"|{part}" for part in namespace)
        if mode == "messages":
            return self._messages(suffix, data)
        if mode not in self.requested:
            return []
        return [(mode + suffix, dumps(data))]

    def _messages(self, suffix: str, data: Any) -> list[tuple[str, str]]:
        message, metadata = data
        events: list[tuple[str, str]] = []
        if MESSAGES_TUPLE in self.requested:
            events.append(("messages" + suffix, dumps([message, metadata])))
        if LEGACY_MESSAGES in self.requested and isinstance(message, BaseMessage):
            key = message.id or ""
            if key not in self._seen:
                self._seen[key] = None
                events.append(("messages/metadata" + suffix, dumps({key: {"metadata": metadata}})))
            if isinstance(message, BaseMessageChunk):
                so_far = self._seen[key]
                so_far = message if so_far is None else so_far + message
                self._seen[key] = so_far
                whole = message_chunk_to_message(so_far)
                events.append(("messages/partial" + suffix, dumps([whole])))
            else:
                events.append(("messages/complete" + suffix, dumps([message])))
        return events


def split_chunk(chunk: Any, subgraphs: bool) -> tuple[tuple[str, ...], str, Any]:
    """(namespace, mode, data) of an astream chunk taken with a list of modes."""
    if subgraphs:
        namespace, mode, data = chunk
        return tuple(namespace), mode, data
    mode, data = chunk
    return (), mode, data
