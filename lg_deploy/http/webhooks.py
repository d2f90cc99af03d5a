"""A run's webhook as the API accepts it: one the allow-list passes, on the postgres backend."""

from __future__ import annotations

from typing import Any

from lg_deploy.http.errors import ApiError
from lg_deploy.runtime import Runtime
from lg_deploy.webhooks.allowlist import WebhookRefused, parse_webhook_url

WEBHOOK_REFUSED = "webhook_refused"
NOT_SUPPORTED = "not_supported"


def webhook_url(value: Any) -> Any:
    """Field validator: null, or an http(s) URL with a host (ValueError saying what is wrong)."""
    if value is not None:
        parse_webhook_url(value)
    return value


def checked_webhook(runtime: Runtime, url: str | None) -> str | None:
    """`url` when lg-deploy may send to it (no DNS lookup here; it is checked again, resolved,
    at each try); 422 when the allow-list refuses it or the backend keeps no webhooks."""
    if url is None:
        return None
    if runtime.webhooks is None:
        problem = "webhooks need the postgres backend (LG_DEPLOY_BACKEND=postgres)"
        raise ApiError(422, f"webhook: {problem}", code=NOT_SUPPORTED, details=_field(problem))
    try:
        runtime.webhooks.allow.check_url(url)
    except WebhookRefused as refused:
        raise ApiError(
            422, f"webhook: {refused}", code=WEBHOOK_REFUSED, details=_field(str(refused))
        ) from None
    return url


def _field(problem: str) -> list[dict[str, str]]:
    return [{"field": "webhook", "problem": problem}]
