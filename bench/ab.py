"""Alternating A/B of the 1-process drain: `python -m bench.ab ROUNDS NAME:SLOTS[:VAR=V,...] ...`.

Each round runs the no-op graph-only loop (10,000 runs, or `AB_LOOP`), then one drain per
variant (20,000 rows, or `AB_ROWS`), in the same order, on one private PostgreSQL; the
machine's drift then moves every variant alike. Prints each variant's median rate, its share
of the graph-only median, and the worker's CPU time per execution (start-up included).
Example, claiming ahead or not:

    python -m bench.ab 3 ahead:64 none:64:LG_DEPLOY_CLAIM_AHEAD=0
"""

from __future__ import annotations

import os
import statistics
import sys

from bench import measure
from bench.server import Server

ROWS = int(os.environ.get("AB_ROWS", "20000"))
LOOP = int(os.environ.get("AB_LOOP", "10000"))


def parse(spec: str) -> tuple[str, int, dict[str, str]]:
    """NAME:SLOTS[:VAR=V,...] as (name, slots, environment)."""
    name, slots, *rest = spec.split(":", 2)
    env = dict(pair.split("=", 1) for pair in (rest[0].split(",") if rest else []) if pair)
    return name, int(slots), env


def main(argv: list[str]) -> None:
    """Run the rounds and print the medians."""
    rounds, variants = int(argv[0]), [parse(spec) for spec in argv[1:]]
    loop: list[float] = []
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in variants}
    server = Server()
    try:
        for number in range(rounds):
            loop.append(measure.graph_loop("noop", LOOP))
            for name, slots, env in variants:
                runs[name].append(measure.timed_drain(server, ROWS, slots, env=env))
                print(f"round {number + 1} {name}: {runs[name][-1][0]:,.0f}/s", flush=True)
    finally:
        server.close()
    limit = statistics.median(loop)
    print(f"graph-only: {limit:,.0f}/s ({', '.join(f'{v:,.0f}' for v in loop)})")
    for name, got in runs.items():
        rate = statistics.median(rate for rate, _ in got)
        cpu_ms = 1000 * statistics.median(used for _, used in got) / ROWS
        rates = ", ".join(f"{r:,.0f}" for r, _ in got)
        print(f"{name}: {rate:,.0f}/s = {100 * rate / limit:.1f} % ({rates}); {cpu_ms:.3f} ms CPU")


if __name__ == "__main__":
    main(sys.argv[1:])
