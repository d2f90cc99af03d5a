"""The OpenAPI paths of the cron routes (lg_deploy.http.langgraph_crons)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from lg_deploy.crons.models import Cron
from lg_deploy.http.langgraph_crons import CronCreate, CronFilter, CronPatch, CronSearch
from lg_deploy.http.openapi_parts import REF, answer, errors, json_content, operation, path_params


def cron_paths(components: dict[str, Any]) -> dict[str, Any]:
    """The cron routes: create, read, update, delete, search, count."""
    models: list[type[BaseModel]] = [Cron, CronCreate, CronPatch, CronFilter, CronSearch]
    _, schemas = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    components.update(schemas["$defs"])
    body_errors = (400, 413, 415, 422, 503)
    made = {"200": answer("the cron", Cron), **errors(404, *body_errors)}
    one = path_params("cron_id")
    selection = {k: v for k, v in schemas["$defs"]["Cron"].items() if k != "required"}
    components["CronSelection"] = {**selection, "title": "CronSelection"}
    found = {
        "description": "one page of crons (only the `select` fields, if given)",
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": {"$ref": REF.format(model="CronSelection")}}
            }
        },
    }
    count = {
        "description": "how many",
        "content": {"application/json": {"schema": {"type": "integer"}}},
    }

    def body(model: type[BaseModel], required: bool) -> dict[str, Any]:
        return {"requestBody": {"required": required, "content": json_content(model)}}

    return {
        "/runs/crons": {
            "post": operation(
                "A cron whose ticks start thread-less runs", made, **body(CronCreate, True)
            )
        },
        "/threads/{thread_id}/runs/crons": {
            "post": operation(
                "A cron whose ticks start runs on the thread",
                made,
                parameters=path_params("thread_id"),
                **body(CronCreate, True),
            )
        },
        "/runs/crons/search": {
            "post": operation(
                "Crons by assistant, thread, enabled and metadata, in order, one page",
                {"200": found, **errors(*body_errors)},
                **body(CronSearch, False),
            )
        },
        "/runs/crons/count": {
            "post": operation(
                "How many crons match",
                {"200": count, **errors(*body_errors)},
                **body(CronFilter, False),
            )
        },
        "/runs/crons/{cron_id}": {
            "get": operation(
                "A cron", {"200": answer("the cron", Cron), **errors(404, 503)}, parameters=one
            ),
            "patch": operation(
                "Change a cron; its next tick follows the new schedule",
                {"200": answer("the cron", Cron), **errors(404, *body_errors)},
                parameters=one,
                **body(CronPatch, False),
            ),
            "delete": operation(
                "Delete a cron (its executions stay)",
                {"204": {"description": "deleted"}, **errors(404, 503)},
                parameters=one,
            ),
        },
    }
