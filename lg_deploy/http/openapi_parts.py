"""The pieces OpenAPI operations are built from: references, answers, errors, parameters."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from lg_deploy.http.schemas import ErrorBody

REF = "#/components/schemas/{model}"


def ref(model: type[BaseModel]) -> dict[str, str]:
    """A reference to the model's component schema."""
    return {"$ref": REF.format(model=model.__name__)}


def json_content(model: type[BaseModel]) -> dict[str, Any]:
    """JSON content of the model's shape."""
    return {"application/json": {"schema": ref(model)}}


def answer(description: str, model: type[BaseModel], **headers: str) -> dict[str, Any]:
    """A response with a JSON body of the model's shape, and the headers named (text)."""
    answered: dict[str, Any] = {"description": description, "content": json_content(model)}
    if headers:
        answered["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return answered


def errors(*codes: int) -> dict[str, Any]:
    """The error responses for these statuses (ErrorBody)."""
    return {str(code): answer("error", ErrorBody) for code in codes}


def query_params(model: type[BaseModel], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """One parameter per field; shared schemas (enums) go to `defs` for components."""
    schema = model.model_json_schema(ref_template=REF)
    defs.update(schema.get("$defs", {}))
    return [
        {"name": name, "in": "query", "required": False, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def operation(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An operation with these responses (and 500), plus parameters or a request body."""
    return {"summary": summary, "responses": {**responses, **errors(500)}, **extra}


def array_of(model: type[BaseModel], description: str) -> dict[str, Any]:
    """A response whose body is a JSON array of the model's shape."""
    schema = {"type": "array", "items": ref(model)}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def any_object(description: str) -> dict[str, Any]:
    """A response whose body is any JSON object."""
    schema = {"type": "object", "additionalProperties": True}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def path_params(*names: str) -> list[dict[str, Any]]:
    """Required string path parameters."""
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]
