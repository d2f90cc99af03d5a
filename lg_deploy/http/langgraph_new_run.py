"""A run body read and made into the QUEUED execution it asks for: shared by the run routes
and the cron routes (whose every tick makes such a run)."""

from __future__ import annotations

from pydantic import ValidationError
from starlette.requests import Request

from lg_deploy.assistants.catalog import AssistantCatalog
from lg_deploy.assistants.models import Assistant
from lg_deploy.assistants.runs import run_config, run_context, stored_id
from lg_deploy.http.errors import ApiError, request_id_of, validation_details
from lg_deploy.http.langgraph_run_body import NOT_SUPPORTED, RunBody
from lg_deploy.http.requests import body_as, runtime_of
from lg_deploy.http.webhooks import checked_webhook
from lg_deploy.models import ExecutionState
from lg_deploy.runtime import Runtime
from lg_deploy.settings import Settings


async def assistant_for(runtime: Runtime, assistant_id: str) -> Assistant:
    """The assistant a run names (a graph name, a system uuid5 or a stored assistant's id): 404
    when there is none, 422 when its graph is not served here."""
    graph_ids = runtime.graphs.names()
    assistant = await AssistantCatalog(runtime.assistants, graph_ids).find(assistant_id)
    if assistant is None:
        raise ApiError(404, f"assistant {assistant_id!r} not found", known_graphs=graph_ids)
    if assistant.graph_id not in graph_ids:
        message = f"assistant {assistant_id!r} runs graph {assistant.graph_id!r}, not served here"
        raise ApiError(422, message, known_graphs=graph_ids)
    return assistant


async def run_body(request: Request, model: type[RunBody]) -> RunBody:
    """The run body; a key lg-deploy does not honour yet is a 422 `not_supported` naming it."""
    try:
        body: RunBody = await body_as(request, model)
    except ValidationError as error:
        details = validation_details(error)
        refused = [
            detail
            for detail, item in zip(details, error.errors(), strict=True)
            if item["type"] == NOT_SUPPORTED
        ]
        if not refused:
            raise
        message = f"{refused[0]['field']}: {refused[0]['problem']}"
        raise ApiError(422, message, code=NOT_SUPPORTED, details=details) from None
    return body


async def new_run(request: Request, body: RunBody, thread_id: str | None) -> ExecutionState:
    """The QUEUED execution a run body asks for, on `thread_id` (None: thread-less), with its
    assistant's graph, and its assistant's config and context under the run's own."""
    runtime = runtime_of(request)
    settings: Settings = request.state.settings
    assistant = await assistant_for(runtime, body.assistant_id)
    config = run_config(assistant, body.config or {})
    checkpoint = {**(body.checkpoint or {})}
    if body.checkpoint_id is not None:
        checkpoint["checkpoint_id"] = body.checkpoint_id
    if checkpoint:
        config["configurable"] = {**config.get("configurable", {}), **checkpoint}
    try:
        return ExecutionState(
            graph_id=assistant.graph_id,
            assistant_id=stored_id(assistant),
            input=body.input if thread_id is not None else body.input or {},
            metadata=body.metadata or {},
            max_attempts=settings.max_attempts,
            request_id=request_id_of(request.scope) or None,
            thread_id=thread_id,
            config=config,
            context=run_context(assistant, body.context or {}),
            command=body.command_json(),
            interrupt_before=body.breakpoints(body.interrupt_before),
            interrupt_after=body.breakpoints(body.interrupt_after),
            multitask_strategy=body.multitask_strategy if thread_id is not None else None,
            stream_mode=body.stream_modes(),
            stream_subgraphs=bool(body.stream_subgraphs),
            stream_resumable=bool(body.stream_resumable),
            webhook=checked_webhook(runtime, body.webhook),
        )
    except ValidationError as error:
        raise ApiError(422, "run body is invalid", details=validation_details(error)) from None
