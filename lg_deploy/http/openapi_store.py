"""The OpenAPI paths of the store routes (lg_deploy.http.langgraph_store)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from lg_deploy.http.langgraph_store_bodies import (
    FoundItems,
    ItemDelete,
    ItemPut,
    ItemQuery,
    ItemSearch,
    Namespaces,
    NamespaceSearch,
    StoreItem,
)
from lg_deploy.http.openapi_parts import REF, answer, errors, json_content, operation


def store_paths(components: dict[str, Any]) -> dict[str, Any]:
    """The store routes: items put, read, deleted and searched, and their namespaces."""
    models: list[type[BaseModel]] = [ItemPut, ItemDelete, ItemSearch, NamespaceSearch]
    _, schemas = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    components.update(schemas["$defs"])
    answers: list[type[BaseModel]] = [StoreItem, FoundItems, Namespaces]
    _, schemas = models_json_schema([(m, "serialization") for m in answers], ref_template=REF)
    components.update(schemas["$defs"])
    body_errors = (400, 413, 415, 422, 503)
    item_or_null = {"anyOf": [{"$ref": REF.format(model="StoreItem")}, {"type": "null"}]}
    done = {"204": {"description": "done"}}

    def body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
        return {"requestBody": {"required": required, "content": json_content(model)}}

    return {
        "/store/items": {
            "put": operation(
                "Store or replace an item (ttl in minutes)",
                {**done, **errors(*body_errors)},
                **body(ItemPut),
            ),
            "get": operation(
                "An item, or null when there is none (or it expired)",
                {
                    "200": {
                        "description": "the item, or null",
                        "content": {"application/json": {"schema": item_or_null}},
                    },
                    **errors(422, 503),
                },
                parameters=_item_query(),
            ),
            "delete": operation(
                "Delete an item (204 whether or not it existed)",
                {**done, **errors(*body_errors)},
                **body(ItemDelete),
            ),
        },
        "/store/items/search": {
            "post": operation(
                "Items under a namespace prefix matching a filter, latest change first",
                {"200": answer("the items found", FoundItems), **errors(*body_errors)},
                **body(ItemSearch, required=False),
            )
        },
        "/store/namespaces": {
            "post": operation(
                "The namespaces holding items, by prefix, suffix and depth",
                {"200": answer("the namespaces", Namespaces), **errors(*body_errors)},
                **body(NamespaceSearch, required=False),
            )
        },
    }


def _item_query() -> list[dict[str, Any]]:
    """The query parameters of GET /store/items: namespace and key required."""
    schema = ItemQuery.model_json_schema()["properties"]
    descriptions = {
        "namespace": "the namespace's labels joined by dots, as the SDKs send it",
        "key": "the item's key",
        "refresh_ttl": "restart the item's TTL (default: LG_DEPLOY_STORE_REFRESH_TTL_ON_READ)",
    }
    refresh = {"type": "string", "enum": ["true", "false"]}
    return [
        {
            "name": name,
            "in": "query",
            "required": name != "refresh_ttl",
            "description": text,
            "schema": refresh if name == "refresh_ttl" else schema[name],
        }
        for name, text in descriptions.items()
    ]
