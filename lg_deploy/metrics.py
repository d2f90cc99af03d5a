"""Prometheus series (lg_deploy_*) for one process, in a registry of its own."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from lg_deploy.models import StatusCount, UnservedGraph

# The *_created series double every counter and help no dashboard.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client

PICKUP_SECONDS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)
LOOP_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
RUN_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class Metrics:
    """The instruments the worker and the HTTP layer record into."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge(
            "lg_deploy_queue_depth",
            "Executions QUEUED or RUNNING, per graph and status (read at scrape time).",
            ["graph_id", "status"],
            registry=self.registry,
        )
        self.started = Counter(
            "lg_deploy_executions_started",
            "Executions this process started running, per graph.",
            ["graph_id"],
            registry=self.registry,
        )
        self.finished = Counter(
            "lg_deploy_executions_finished",
            "Executions this process finished, per graph and outcome (COMPLETED or FAILED).",
            ["graph_id", "status"],
            registry=self.registry,
        )
        self.run_seconds = Histogram(
            "lg_deploy_execution_run_seconds",
            "Time from start to outcome of executions run by this process.",
            ["graph_id", "status"],
            buckets=RUN_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.pickup_seconds = Histogram(
            "lg_deploy_execution_pickup_seconds",
            "Time from an execution being due (run_at) to a worker of this process starting it.",
            ["graph_id"],
            buckets=PICKUP_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.listener_connected = Gauge(
            "lg_deploy_listener_connected",
            "1 while this process's LISTEN connection is up, else 0 (read at scrape time).",
            registry=self.registry,
        )
        self.listener_connects = Gauge(
            "lg_deploy_listener_connects",
            "How many times this process's LISTEN connection was made (1 + reconnects).",
            registry=self.registry,
        )
        self.retries = Counter(
            "lg_deploy_executions_retried",
            "Failed runs this process put back in the queue for another attempt, per graph.",
            ["graph_id"],
            registry=self.registry,
        )
        self.lease_recoveries = Counter(
            "lg_deploy_lease_recoveries",
            "Executions whose lease expired, recovered by this process, per resulting status.",
            ["status"],
            registry=self.registry,
        )
        self.leases_lost = Counter(
            "lg_deploy_leases_lost",
            "Runs this process stopped because another attempt took over their execution.",
            registry=self.registry,
        )
        self.unserved_executions = Gauge(
            "lg_deploy_unserved_executions",
            "QUEUED executions of a graph no live worker serves, per graph (read at scrape time).",
            ["graph_id"],
            registry=self.registry,
        )
        self.unserved_wait_seconds = Gauge(
            "lg_deploy_unserved_wait_seconds",
            "How long the longest-waiting due execution of an unserved graph has waited.",
            ["graph_id"],
            registry=self.registry,
        )
        self.loop_lag_seconds = Histogram(
            "lg_deploy_event_loop_lag_seconds",
            "How late this process's event loop ran a 0.1 s timer (blocking code shows here).",
            buckets=LOOP_LAG_BUCKETS,
            registry=self.registry,
        )
        self.loop_stalls = Counter(
            "lg_deploy_event_loop_stalls",
            "Times this process's event loop was blocked past LG_DEPLOY_LOOP_WARN_SECONDS.",
            registry=self.registry,
        )
        self.http_requests = Counter(
            "lg_deploy_http_requests",
            "HTTP requests answered, per method, route and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )

    def set_queue_depth(self, counts: Iterable[StatusCount]) -> None:
        """Replace the depth gauge with these counts (graphs no longer present disappear)."""
        self.queue_depth.clear()
        for count in counts:
            self.queue_depth.labels(count.graph_id, count.status.value).set(count.count)

    def set_unserved(self, graphs: Iterable[UnservedGraph]) -> None:
        """Replace the unserved-graph gauges with these (graphs served again disappear)."""
        self.unserved_executions.clear()
        self.unserved_wait_seconds.clear()
        for graph in graphs:
            self.unserved_executions.labels(graph.graph_id).set(graph.queued)
            self.unserved_wait_seconds.labels(graph.graph_id).set(graph.waiting_seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)
