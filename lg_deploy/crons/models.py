"""A cron as the LangGraph API shows it, and the changes an update asks for."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict


class Cron(BaseModel):
    """One row of lg_deploy.crons, in the platform's Cron shape (plus lg-deploy's own fields)."""

    model_config = ConfigDict(frozen=True)

    cron_id: str
    assistant_id: str
    graph_id: str
    thread_id: str | None
    schedule: str
    timezone: str
    on_run_completed: str | None
    end_time: AwareDatetime | None
    enabled: bool
    next_run_date: AwareDatetime | None
    last_tick_at: AwareDatetime | None
    error: str | None
    payload: dict[str, Any]
    metadata: dict[str, Any]
    user_id: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime


@dataclass(frozen=True)
class NewCron:
    """What a new cron holds: its schedule and the run each tick creates."""

    graph_id: str
    schedule: str
    timezone: str = "UTC"
    assistant_id: str | None = None
    thread_id: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    interrupt_before: list[str] | None = None
    interrupt_after: list[str] | None = None
    multitask_strategy: str | None = None
    stream_mode: list[str] | None = None
    stream_subgraphs: bool = False
    webhook: str | None = None
    on_run_completed: str = "delete"
    payload: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    end_time: datetime | None = None


@dataclass(frozen=True)
class CronChanges:
    """What an update changes; None keeps a field (end_time: only when `set_end_time`)."""

    schedule: str | None = None
    timezone: str | None = None
    input: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    interrupt_before: list[str] | None = None
    interrupt_after: list[str] | None = None
    stream_mode: list[str] | None = None
    stream_subgraphs: bool | None = None
    webhook: str | None = None
    on_run_completed: str | None = None
    enabled: bool | None = None
    set_end_time: bool = False
    end_time: datetime | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CronQuery:
    """Which crons a search or count wants."""

    graph_id: str | None = None
    thread_id: str | None = None
    enabled: bool | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
