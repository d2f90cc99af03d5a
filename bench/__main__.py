"""Run the benchmark suite: `python -m bench [--quick] [--only drain,pickup] [--repeat N]`.

Starts its own PostgreSQL, runs each measurement several times, prints a table (median, min,
max), the machine facts and the targets of issue 5 met or missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import measure, procs
from bench.measure import QUICK, Result, Sizes
from bench.server import Server

# The long steps (a 20,000 drain takes over a minute on 2 cores) run at most twice, so that
# the whole suite stays under 15 minutes.
HEAVY = ("drain", "depth", "peer")
HEAVY_REPEAT = 2
GROUPS = [
    "graph-only",
    "drain",
    "raw-sql",
    "pickup",
    "http",
    "depth",
    "concurrency",
    "streaming",
    "peers",
    "platform",
]


def machine(server: Server) -> dict[str, str]:
    """The facts a figure needs: cores, memory, CPU, PostgreSQL, Python."""
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "cpus (nproc)": str(os.cpu_count()),
        "memory": memory,
        "cpu": cpu,
        "postgresql": server.version(),
        "postgresql fsync / synchronous_commit": (
            f"{server.setting('fsync')} / {server.setting('synchronous_commit')}"
        ),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def plan(
    server: Server, sizes: Sizes, only: set[str], servers: list[str], background: int | None = None
) -> list[tuple[str, Callable[[], Result]]]:
    """(row name, one repetition) for every selected measurement, in run order."""
    steps: list[tuple[str, Callable[[], Result]]] = []

    def want(group: str) -> bool:
        return not only or group in only

    if want("graph-only"):
        steps.append(("graph-only (no-op graph, loop)", lambda: measure.graph_only(server, sizes)))
    if want("drain"):
        label = f"drain {sizes.drain:,} no-op, 1 process x {sizes.concurrency}"
        steps.append((label, lambda: measure.drain(server, sizes, 1)))
        label = f"drain {sizes.drain:,} no-op, 2 processes x {sizes.concurrency}"
        steps.append((label, lambda: measure.drain(server, sizes, 2)))
    if want("raw-sql"):
        steps.append(
            (
                "raw SQL (pgbench) claim+complete, 1 per stmt",
                lambda: measure.raw_sql(server, sizes, 1),
            )
        )
        steps.append(
            (
                f"raw SQL (pgbench) claim+complete, {sizes.batch} per stmt",
                lambda: measure.raw_sql(server, sizes, sizes.batch),
            )
        )
    if want("pickup"):
        steps.append(
            (
                f"pickup: SQL INSERT -> RUNNING at {sizes.pickup_rate:g}/s",
                lambda: measure.pickup_sql(server, sizes),
            )
        )
        steps.append(
            (
                f"pickup: HTTP submit -> COMPLETED at {sizes.pickup_rate:g}/s",
                lambda: measure.pickup_http(server, sizes),
            )
        )
    if want("http"):
        steps.append(
            (
                f"HTTP POST /executions, {sizes.http_connections} connections",
                lambda: measure.http_submit(server, sizes),
            )
        )
    if want("depth"):
        holder: dict[str, measure.DeepQueue] = {}

        def depth() -> Result:
            if "deep" not in holder:
                holder["deep"] = measure.DeepQueue(server, sizes)
            return measure.depth(server, sizes, holder["deep"])

        steps.append(
            (
                f"depth: {sizes.depth_slice:,} of {sizes.depth_big:,} queued vs "
                f"{sizes.depth_small:,} queued",
                depth,
            )
        )
    if want("concurrency"):
        steps.append(
            (
                f"graph-only (50 ms graph, {sizes.sleep_concurrency:,} concurrent loops)",
                lambda: measure.graph_only_sleep(server, sizes),
            )
        )
        steps.append(
            (
                f"concurrency: 50 ms graph, {sizes.sleep_concurrency:,} slots",
                lambda: measure.concurrency(server, sizes),
            )
        )
    if want("streaming"):
        from bench import streaming

        stream = streaming.QUICK if sizes == QUICK else streaming.StreamSizes()
        steps.append(
            (
                f"streaming: custom events at {streaming.EMIT_RATE:g}/s, worker -> client",
                lambda: streaming.latency(server, stream),
            )
        )
        steps.append(
            (
                f"streaming: {2 * stream.words - 1:,} tokens (messages-tuple) vs in-process",
                lambda: streaming.throughput(server, stream),
            )
        )
        steps.append(
            (
                f"streaming: {stream.clients:,} clients x {streaming.CLIENT_EVENTS} events,"
                " 1 API process",
                lambda: streaming.clients(server, stream),
            )
        )
    if want("peers"):
        from bench import peers

        for name, run in peers.PEERS.items():
            steps.append(
                (
                    f"peer {name}: drain {sizes.drain:,} no-op graph",
                    lambda run=run: run(server, sizes),
                )
            )  # type: ignore[misc]
    if want("platform"):
        from bench import platform

        platform_sizes = platform.QUICK if sizes == QUICK else platform.PlatformSizes()
        if background:
            platform_sizes = dataclasses.replace(platform_sizes, background=background)
        steps.extend(platform.steps(server, platform_sizes, servers))
    return steps


def summarise(samples: list[Result]) -> dict[str, dict[str, float]]:
    """{metric: {median, min, max}} over repetitions."""
    metrics = samples[0].keys()
    return {
        m: {
            "median": statistics.median(s[m] for s in samples),
            "min": min(s[m] for s in samples),
            "max": max(s[m] for s in samples),
        }
        for m in metrics
    }


def table(results: dict[str, Any]) -> str:
    """The Markdown table of every row."""
    lines = ["| measurement | metric | median | min | max |", "|---|---|---:|---:|---:|"]
    for name, entry in results.items():
        if "error" in entry:
            lines.append(f"| {name} | ERROR: {entry['error']} | | | |")
            continue
        for metric, stats in entry["stats"].items():
            lines.append(
                f"| {name} | {metric} | {stats['median']:,.1f} | {stats['min']:,.1f} |"
                f" {stats['max']:,.1f} |"
            )
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[str]:
    """Each target of issue 5 whose inputs were measured: met, or missed by how much."""

    def med(prefix: str, metric: str) -> float | None:
        for name, entry in results.items():
            if name.startswith(prefix) and "stats" in entry and metric in entry["stats"]:
                return float(entry["stats"][metric]["median"])
        return None

    out: list[str] = []

    def check(label: str, value: float | None, limit: float | None, higher: bool = True) -> None:
        if value is None or limit is None:
            return
        ok = value >= limit if higher else value <= limit
        sign = ">=" if higher else "<="
        verdict = "met" if ok else f"MISSED by {abs(value - limit) / limit * 100:.0f} %"
        out.append(f"- {label}: {value:,.1f} {sign} {limit:,.1f}: {verdict}")

    graph = med("graph-only (no-op", "invocations/s")
    same_graph = med("graph-only (50 ms", "invocations/s")
    for processes in ("1 process", "2 processes"):
        drained = paired = None
        for name, entry in results.items():
            if name.startswith("drain") and processes in name and "stats" in entry:
                drained = entry["stats"]["executions/s"]["median"]
                paired = entry["stats"]["% of graph-only beside"]["median"]
        check(f"drain ({processes}) % of the graph-only loop run beside it", paired, 80.0)
        check(f"drain ({processes}) >= 80 % of graph-only", drained, 0.8 * graph if graph else None)
        for name, entry in results.items():
            if name.startswith("peer") and "stats" in entry:
                check(
                    f"drain ({processes}) >= {name}",
                    drained,
                    entry["stats"]["executions/s"]["median"],
                )
    check("pickup SQL p50 ms", med("pickup: SQL", "p50 ms"), 5.0, higher=False)
    check("pickup SQL p99 ms", med("pickup: SQL", "p99 ms"), 25.0, higher=False)
    check("HTTP submit % of bare endpoint", med("HTTP POST", "ratio %"), 80.0)
    check("depth: deep % of shallow", med("depth", "ratio %"), 80.0)
    rate = med("concurrency", "executions/s")
    for name in results:
        if name.startswith("concurrency"):
            slots = float(re.findall(r"([\d,]+) slots", name)[0].replace(",", ""))
            for label, limit in (("no-op graph", graph), ("the 50 ms graph itself", same_graph)):
                if limit is not None:
                    check(
                        f"concurrency executions/s >= 80 % of min(slots/50ms, graph-only of"
                        f" {label})",
                        rate,
                        0.8 * min(slots / 0.05, limit),
                    )
    check("concurrency worker peak RSS MB", med("concurrency", "peak RSS MB"), 300.0, higher=False)
    from bench import platform

    return out + platform.targets(results)


def main(argv: list[str] | None = None) -> int:
    """Command line entry."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repetition")
    parser.add_argument("--only", default="", help=f"comma-separated: {','.join(GROUPS)}")
    parser.add_argument("--skip", default="", help="comma-separated groups to leave out")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument(
        "--background",
        type=int,
        default=None,
        help="runs of the platform group's runs.create row (default 5,000; --quick 30)",
    )
    parser.add_argument(
        "--servers",
        default=None,
        help="the platform group's servers, comma-separated (default: lg-deploy,langgraph-dev,"
        "aegra; with --quick: lg-deploy)",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    repeat = args.repeat or (1 if args.quick else 3)
    only = {g for g in args.only.split(",") if g}
    skip = {g for g in args.skip.split(",") if g}
    if unknown := (only | skip) - set(GROUPS):
        parser.error(f"unknown groups {sorted(unknown)}; known: {', '.join(GROUPS)}")
    if skip:
        only = (only or set(GROUPS)) - skip
    default_servers = "lg-deploy" if args.quick else "lg-deploy,langgraph-dev,aegra"
    servers = [s for s in (args.servers or default_servers).split(",") if s]
    started = time.monotonic()
    server = Server()
    results: dict[str, Any] = {}
    try:
        facts = machine(server)
        for name, step in plan(server, sizes, only, servers, args.background):
            print(f"== {name}", file=sys.stderr, flush=True)
            samples: list[Result] = []
            times = min(repeat, HEAVY_REPEAT) if name.startswith(HEAVY) else repeat
            if name.startswith("platform") and args.repeat is None:
                times = 1  # each server once per row, the servers alternating row by row
            try:
                for number in range(times):
                    began = time.monotonic()
                    samples.append(step())
                    print(
                        f"   run {number + 1}: {samples[-1]} ({time.monotonic() - began:.1f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
                results[name] = {"stats": summarise(samples), "samples": samples}
            except Exception as error:
                traceback.print_exc()
                results[name] = {"error": f"{type(error).__name__}: {str(error)[:200]}"}
                procs.stop_all()
    finally:
        procs.stop_all()
        server.close()
    elapsed = time.monotonic() - started
    command = "scripts/bench " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\n## Results (up to {repeat} repetitions, {elapsed:.0f} s, `{command.strip()}`)\n")
    print(table(results))
    print("\n## Machine\n")
    for key, value in facts.items():
        print(f"- {key}: {value}")
    print("\n## Targets\n")
    print("\n".join(targets(results)) or "- (none of the targets' inputs were measured)")
    if args.json:
        args.json.write_text(
            json.dumps({"results": results, "machine": facts, "seconds": elapsed}, indent=1)
        )
    return 1 if any("error" in entry for entry in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
