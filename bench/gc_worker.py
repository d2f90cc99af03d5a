"""`python -m bench.gc_worker REPORT`: `lg-deploy worker` that counts its garbage collections.

On exit it writes {"gc_seconds", "cpu_seconds", "collections": [young, middle, oldest]} to
REPORT as JSON; `bench.gc_share` reads it.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

from lg_deploy.cli import main


class CollectionClock:
    """Time spent inside collections, and how many of each generation ran."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._began
        self.collections[info["generation"]] += 1


def run(report: Path) -> int:
    """Run the worker with the clock on; write the report when it stops."""
    clock = CollectionClock()
    gc.callbacks.append(clock)
    status = main(["worker"])
    summary = {
        "gc_seconds": clock.seconds,
        "cpu_seconds": time.process_time(),
        "collections": clock.collections,
    }
    report.write_text(json.dumps(summary))
    return status


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
