"""The OpenAPI paths of the thread routes (lg_deploy.http.langgraph_threads)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from lg_deploy.http.langgraph_threads import (
    PruneResult,
    ThreadCreate,
    ThreadFilter,
    ThreadPatch,
    ThreadPrune,
    ThreadSearch,
)
from lg_deploy.http.openapi_parts import REF, answer, errors, json_content, operation, path_params
from lg_deploy.threads.models import Thread


def thread_paths(components: dict[str, Any]) -> dict[str, Any]:
    """The thread routes (lg_deploy.http.langgraph_threads)."""
    models: list[type[BaseModel]] = [
        Thread,
        ThreadCreate,
        ThreadPatch,
        ThreadSearch,
        ThreadFilter,
        ThreadPrune,
        PruneResult,
    ]
    _, schemas = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    components.update(schemas["$defs"])
    thread = path_params("thread_id")
    body_errors = (400, 413, 415, 422)
    count = {
        "description": "how many",
        "content": {"application/json": {"schema": {"type": "integer"}}},
    }
    pages = {
        "X-Pagination-Total": "threads matching the filters",
        "X-Pagination-Next": "the offset of the next page, while more remain",
    }
    # With `select`, a search answers only the fields asked for: the Thread's, none required.
    selection = {k: v for k, v in schemas["$defs"]["Thread"].items() if k != "required"}
    components["ThreadSelection"] = {**selection, "title": "ThreadSelection"}
    items = {"type": "array", "items": {"$ref": REF.format(model="ThreadSelection")}}
    found: dict[str, Any] = {
        "description": "one page of threads (only the `select` fields, if given)",
        "content": {"application/json": {"schema": items}},
    }
    found["headers"] = {
        name: {"description": text, "schema": {"type": "string"}} for name, text in pages.items()
    }

    def body(model: type[BaseModel]) -> dict[str, Any]:
        return {"requestBody": {"required": False, "content": json_content(model)}}

    return {
        "/threads": {
            "post": operation(
                "Create a thread (409 for a taken id unless if_exists is do_nothing)",
                {"200": answer("the thread", Thread), **errors(409, *body_errors)},
                **body(ThreadCreate),
            )
        },
        "/threads/search": {
            "post": operation(
                "Threads by metadata, values, status or ids, in order, one page",
                {"200": found, **errors(*body_errors)},
                **body(ThreadSearch),
            )
        },
        "/threads/count": {
            "post": operation(
                "How many threads match the filters",
                {"200": count, **errors(*body_errors)},
                **body(ThreadFilter),
            )
        },
        "/threads/prune": {
            "post": operation(
                "Delete the threads named (strategy delete; keep_latest is not supported yet)",
                {"200": answer("how many were deleted", PruneResult), **errors(*body_errors)},
                requestBody={"required": True, "content": json_content(ThreadPrune)},
            )
        },
        "/threads/{thread_id}": {
            "get": operation(
                "A thread",
                {"200": answer("the thread", Thread), **errors(404)},
                parameters=thread,
            ),
            "patch": operation(
                "Merge metadata into a thread (204 with Prefer: return=minimal)",
                {
                    "200": answer("the thread", Thread),
                    "204": {"description": "merged"},
                    **errors(404, *body_errors),
                },
                parameters=thread,
                **body(ThreadPatch),
            ),
            "delete": operation(
                "Delete a thread, its runs and its checkpoints",
                {"204": {"description": "deleted"}, **errors(404)},
                parameters=thread,
            ),
        },
        "/threads/{thread_id}/copy": {
            "post": operation(
                "A new thread with this one's metadata, values and checkpoints (not its runs)",
                {"200": answer("the new thread", Thread), **errors(404)},
                parameters=thread,
            )
        },
    }
