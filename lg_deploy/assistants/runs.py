"""What an assistant gives the runs that name it: its config and context, under the run's own."""

from __future__ import annotations

from typing import Any

from lg_deploy.assistants.catalog import is_system
from lg_deploy.assistants.models import Assistant


def run_config(assistant: Assistant, config: dict[str, Any]) -> dict[str, Any]:
    """The assistant's config with the run's over it: the run's keys win, and `configurable`
    objects are merged key by key (the run's keys win there too)."""
    merged = {**assistant.config, **config}
    base, own = assistant.config.get("configurable"), config.get("configurable")
    if isinstance(base, dict) and isinstance(own, dict):
        merged["configurable"] = {**base, **own}
    return merged


def run_context(assistant: Assistant, context: dict[str, Any]) -> dict[str, Any]:
    """The assistant's runtime context with the run's keys over it."""
    return {**assistant.context, **context}


def stored_id(assistant: Assistant) -> str | None:
    """The assistant id a run records: a stored assistant's, None for a system assistant."""
    return None if is_system(assistant) else assistant.assistant_id
