"""Collections in a draining worker: `python -m bench.gc_share [ROWS] [SLOTS] [GRAPH]`.

Drains ROWS (20,000) pre-queued executions of GRAPH (`noop`, or `sleep50`) with one worker of
SLOTS (64) slots, once at Python's own threshold (`LG_DEPLOY_GC_OBJECTS_PER_SLOT=0`) and once
at the default sizing, and prints each drain's rate, the share of the worker's CPU spent in
collections and how many of each generation ran (docs/benchmarks.md, the collector).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from bench import measure
from bench.server import Server

VARIANTS = {"python's 700": "0", "sized (default)": "1000"}


def main(argv: list[str]) -> None:
    """Run both drains and print one line each."""
    rows = int(argv[0]) if argv else 20_000
    slots = int(argv[1]) if len(argv) > 1 else 64
    graph_id = argv[2] if len(argv) > 2 else "noop"
    server = Server()
    try:
        with tempfile.TemporaryDirectory() as folder:
            for name, per_slot in VARIANTS.items():
                report = Path(folder) / f"gc-{per_slot}.json"
                rate, _cpu = measure.timed_drain(
                    server,
                    rows,
                    slots,
                    env={"LG_DEPLOY_GC_OBJECTS_PER_SLOT": per_slot},
                    command=["-m", "bench.gc_worker", str(report)],
                    graph_id=graph_id,
                )
                seen = json.loads(report.read_text())
                share = 100 * seen["gc_seconds"] / seen["cpu_seconds"]
                print(
                    f"{name}: {rate:,.0f}/s, collections {share:.1f} % of the worker's CPU,"
                    f" {seen['collections']} (young, middle, oldest)",
                    flush=True,
                )
    finally:
        server.close()


if __name__ == "__main__":
    main(sys.argv[1:])
