"""The collector settings of long-running processes: imports frozen, young generation sized."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lg_deploy.collector import prepare_collector, young_threshold
from lg_deploy.settings import load_settings

PYTHON_YOUNG = gc.get_threshold()[0]


@pytest.fixture(autouse=True)
def restored_collector() -> Iterator[None]:
    """Each test leaves the interpreter's collector as it found it."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class Node:
    """A container that can take part in a reference cycle."""

    def __init__(self) -> None:
        self.other: Any = None


def young_collections(work: Callable[[], None]) -> int:
    """How many youngest-generation collections run while `work()` runs."""
    seen: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 0:
            seen.append(1)

    gc.callbacks.append(count)
    try:
        work()
    finally:
        gc.callbacks.remove(count)
    return len(seen)


def runs_in_flight(slots: int, objects_per_run: int, rounds: int) -> None:
    """Slots filling up and emptying: each run holds its objects, then frees them (no cycles)."""
    for _ in range(rounds):
        live = [[{} for _ in range(objects_per_run)] for _ in range(slots)]
        del live


@pytest.mark.req("PERF-GC")
def test_the_young_generation_is_sized_to_the_slots() -> None:
    """The youngest threshold is slots x objects per slot, never below Python's own."""
    assert young_threshold(64, 1_000) == 64_000
    assert young_threshold(1, 100) == PYTHON_YOUNG
    assert young_threshold(64, 0) == PYTHON_YOUNG


@pytest.mark.req("PERF-GC")
def test_prepare_collector_freezes_imports_and_sets_the_threshold() -> None:
    """What exists at start leaves the collected generations; the older thresholds stay."""
    _, middle, oldest = gc.get_threshold()
    prepare_collector(32, 500)
    assert gc.get_threshold() == (16_000, middle, oldest)
    assert gc.get_freeze_count() > 0


@pytest.mark.req("PERF-GC")
def test_runs_in_flight_no_longer_trigger_collections() -> None:
    """Runs that fill 64 slots with 300 objects each made Python collect; sized, they do not."""
    gc.collect()
    at_python_default = young_collections(lambda: runs_in_flight(64, 300, 20))
    prepare_collector(64)
    sized = young_collections(lambda: runs_in_flight(64, 300, 20))
    assert at_python_default >= 20
    assert sized == 0


@pytest.mark.req("PERF-GC")
def test_cyclic_garbage_is_still_collected_once_it_piles_up() -> None:
    """Cycles past the threshold are collected without anyone calling gc.collect()."""
    prepare_collector(4, 250)  # a young generation of 1,000 objects
    first = Node()
    first.other = Node()
    first.other.other = first
    gone = weakref.ref(first)
    del first
    assert gone() is not None, "a cycle outlives reference counting"
    for _ in range(1_500):
        pair = Node()
        pair.other = Node()
        pair.other.other = pair
    assert gone() is None


@pytest.mark.req("PERF-GC", "LLD-8.1")
def test_the_objects_per_slot_come_from_the_environment() -> None:
    """LG_DEPLOY_GC_OBJECTS_PER_SLOT sets it; 0 keeps Python's collector as it is."""
    assert load_settings({"LG_DEPLOY_GC_OBJECTS_PER_SLOT": "0"}).gc_objects_per_slot == 0
    assert load_settings({"LG_DEPLOY_GC_OBJECTS_PER_SLOT": "250"}).gc_objects_per_slot == 250
