"""jsonb in and out: the fast paths give exactly what json gives, big numbers included."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lg_deploy.db import jsonb
from lg_deploy.models import ExecutionState, ExecutionStatus, Finish, utcnow
from lg_deploy.store.protocol import ExecutionStore
from tests.support.factories import make_state

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
EDGES: dict[str, Any] = {
    "u64_max": 2**64 - 1,
    "past_u64": 2**64,
    "below_i64": -(2**63) - 1,
    "huge": 123456789012345678901234567890,
    "long_fraction": 0.1000000000000000055511151231257827,
    "tiny": 5e-324,
    "unicode": "\u00e9\u6f22\U0001f600",
}


@pytest.mark.req("PERF-DECODE")
@given(JSON_VALUES)
def test_fast_loads_equals_json_loads_in_value_and_type(value: Any) -> None:
    """For any JSON text, jsonb.loads returns what json.loads returns, ints staying ints."""
    text = json.dumps(value).encode()
    assert json.dumps(jsonb.loads(text)) == json.dumps(json.loads(text))


@pytest.mark.req("PERF-DECODE")
@given(JSON_VALUES)
def test_fast_dumps_reads_back_as_json_dumps_does(value: Any) -> None:
    """jsonb.dumps's text reads back to the value json.dumps's does, ints staying ints."""
    assert json.dumps(json.loads(jsonb.dumps(value))) == json.dumps(value)


@pytest.mark.req("PERF-DECODE")
async def test_numbers_beyond_64_bits_survive_the_store(store: ExecutionStore) -> None:
    """An input with integers past 64 bits and a 34-digit fraction reads back exactly."""
    stored = await store.create(make_state(input=EDGES))
    read = await store.get(stored.execution_id)
    assert read is not None
    assert json.dumps(read.input, sort_keys=True) == json.dumps(EDGES, sort_keys=True)


@pytest.mark.req("PERF-DECODE")
async def test_outputs_beyond_64_bits_survive_a_batched_outcome(store: ExecutionStore) -> None:
    """An output with integers past 64 bits, stored by finish_running, reads back exactly."""
    stored = await store.create(make_state())
    claimed = stored.evolve(
        status=ExecutionStatus.RUNNING,
        attempts=1,
        worker_id="w",
        lease_expires_at=utcnow() + timedelta(seconds=30),
    )
    running = await store.update(claimed, expected_status=ExecutionStatus.QUEUED)
    done = Finish(running, ExecutionStatus.COMPLETED, output=EDGES)
    (result,) = await store.finish_running("w", [done])
    assert isinstance(result, ExecutionState)
    read = await store.get(stored.execution_id)
    assert read is not None
    assert json.dumps(read.output, sort_keys=True) == json.dumps(EDGES, sort_keys=True)
