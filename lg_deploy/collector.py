"""Garbage-collector settings for a long-running process: imports frozen, young generation sized.

CPython collects its youngest generation after 700 more container objects were made than freed.
Runs in flight hold thousands of objects each time their slots fill up, so at that threshold a
worker collected every few runs and the collections scanned the live runs, never garbage
(LangGraph runs free nearly everything by reference counting; docs/benchmarks.md has the
cost). A threshold of `objects_per_slot` per slot lets the runs in flight come and go between
collections, while cyclic garbage still goes once about as much has piled up as the runs hold.
"""

from __future__ import annotations

import gc

from lg_deploy.settings import DEFAULT_OBJECTS_PER_SLOT

_PYTHON_YOUNG_THRESHOLD = gc.get_threshold()[0]  # the interpreter's own, read at import


def young_threshold(concurrency: int, objects_per_slot: int) -> int:
    """The youngest generation's threshold for `concurrency` slots (0 per slot: Python's own)."""
    if objects_per_slot == 0:
        return _PYTHON_YOUNG_THRESHOLD
    return max(_PYTHON_YOUNG_THRESHOLD, concurrency * objects_per_slot)


def prepare_collector(concurrency: int, objects_per_slot: int = DEFAULT_OBJECTS_PER_SLOT) -> None:
    """Freeze what imports built, out of every later pass, and size the youngest generation."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold(concurrency, objects_per_slot), middle, oldest)
