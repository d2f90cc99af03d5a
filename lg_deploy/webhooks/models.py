"""A webhook delivery and its tries, as GET /executions/{id}/webhooks shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

DeliveryStatus = Literal["pending", "delivered", "failed"]


class WebhookAttempt(BaseModel):
    """One try of a delivery: a row of lg_deploy.webhook_attempts."""

    model_config = ConfigDict(frozen=True)

    attempt: int = Field(description="1, 2, ...: the X-LG-Deploy-Attempt header it was sent with")
    worker_id: str | None = Field(description="the process that made it")
    started_at: AwareDatetime
    finished_at: AwareDatetime
    status_code: int | None = Field(description="the receiver's HTTP status; null: no answer")
    error: str | None = Field(description="why it failed: HTTP status, timeout, refused, ...")
    duration_ms: int


class WebhookDelivery(BaseModel):
    """A row of lg_deploy.webhook_deliveries, with its tries."""

    model_config = ConfigDict(frozen=True)

    delivery_id: str = Field(description="the X-LG-Deploy-Delivery header: the same on retries")
    execution_id: str
    url: str
    status: DeliveryStatus = Field(description="pending, delivered (a 2xx answer) or failed")
    attempts: int = Field(description="tries started")
    max_attempts: int
    next_attempt_at: AwareDatetime = Field(description="pending: not tried again before this")
    locked_by: str | None = Field(description="the process sending it now, if any")
    lease_expires_at: AwareDatetime | None
    created_at: AwareDatetime = Field(description="when its execution became final")
    updated_at: AwareDatetime
    delivered_at: AwareDatetime | None
    last_status_code: int | None
    last_error: str | None
    attempt_log: list[WebhookAttempt] = Field(description="its tries, in order")


class WebhookDeliveryList(BaseModel):
    """An execution's webhook deliveries (at most one: none when it is not final or has none)."""

    items: list[WebhookDelivery]
