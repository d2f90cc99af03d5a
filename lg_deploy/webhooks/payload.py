"""The body a webhook POSTs for a final execution, built from its row (final rows never change).

A run of the LangGraph routes (it records stream modes) or on a thread gets the platform's shape:
the Run object as GET /threads/{thread_id}/runs/{run_id} returns it, plus `run_started_at`,
`run_ended_at`, `webhook_sent_at`, `values` (its output) and, when it failed, `error`. Any other
execution (POST /executions, an SQL insert) gets the execution as GET /executions/{id} returns it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from lg_deploy.models import ExecutionState, ExecutionStatus


def is_platform_run(state: ExecutionState) -> bool:
    """True for a run the LangGraph routes created (they record stream modes) or on a thread."""
    return state.stream_mode is not None or state.thread_id is not None


def payload_of(state: ExecutionState, sent_at: datetime) -> bytes:
    """The UTF-8 JSON body for the final `state`, sent at `sent_at`."""
    if not is_platform_run(state):
        return state.model_dump_json().encode()
    # Here, not at the top: lg_deploy.http imports the runtime, which imports the sender.
    from lg_deploy.http.langgraph_runs import is_cancelled, run_of

    body: dict[str, Any] = run_of(state)
    body["run_started_at"] = _iso(state.started_at)
    body["run_ended_at"] = _iso(state.finished_at)
    body["webhook_sent_at"] = sent_at.isoformat()
    body["values"] = state.output or {}
    if state.status == ExecutionStatus.FAILED and not is_cancelled(state):
        body["error"] = state.error
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
