"""Whole histories of workers' ``worker_update`` notices and operator actions, applied to a real
WorkerRegistry: the price the proxy bills with is always the last valid notice's, a malformed
notice never changes anything, and a worker's own resume never lifts the operator's disable."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.node.worker_update import MAX_UPDATE_COEFFICIENT, parse_worker_update
from cocoon.proxy.selection import WorkerRecord, WorkerRegistry
from cocoon.proxy.worker_updates import WorkerUpdates

WORKER = "w1"

valid = st.fixed_dictionaries(
    {
        "coefficient": st.integers(0, MAX_UPDATE_COEFFICIENT),
        "max_active_requests": st.integers(1, 64),
        "accepting": st.booleans(),
    }
)
junk = st.one_of(
    valid.map(lambda d: {**d, "coefficient": -1}),
    valid.map(lambda d: {**d, "coefficient": MAX_UPDATE_COEFFICIENT + 1}),
    valid.map(lambda d: {**d, "coefficient": str(d["coefficient"])}),
    valid.map(lambda d: {**d, "coefficient": True}),
    valid.map(lambda d: {**d, "max_active_requests": 0}),
    valid.map(lambda d: {**d, "accepting": 1}),
    valid.map(lambda d: {**d, "extra": 1}),
    valid.map(lambda d: {k: v for k, v in d.items() if k != "accepting"}),
)
event = st.one_of(
    valid.map(lambda d: ("notice", d)),
    junk.map(lambda d: ("notice", d)),
    st.sampled_from([("operator", False), ("operator", True)]),
)


def _enabled(registry: WorkerRegistry) -> bool:
    (view,) = registry.statistics(0.0).per_worker
    return view.enabled


@settings(max_examples=200, deadline=None)
@given(st.lists(event, max_size=30))
def test_histories_keep_the_last_valid_price_and_the_operators_word(history: list[tuple[str, Any]]) -> None:
    registry = WorkerRegistry()
    registry.add(WorkerRecord(WORKER, "m", coefficient=1000, max_active=8))
    updates = WorkerUpdates(registry)
    coefficient, capacity = 1000, 8
    operator_disabled = worker_paused = False
    for kind, value in history:
        if kind == "operator":
            updates.set_by_operator(WORKER, value)
            operator_disabled = not value
        else:
            try:
                parse_worker_update(value)
            except ValueError:
                before = (registry.get(WORKER), _enabled(registry), set(updates.paused))
                with pytest.raises(ValueError):
                    updates.apply(WORKER, value)
                assert (registry.get(WORKER), _enabled(registry), set(updates.paused)) == before
                continue
            updates.apply(WORKER, value)
            coefficient, capacity = value["coefficient"], value["max_active_requests"]
            worker_paused = not value["accepting"]
        record = registry.get(WORKER)
        assert record is not None
        assert (record.coefficient, record.max_active) == (coefficient, capacity)  # what bills use
        # requests only when neither the worker nor the operator says no
        assert _enabled(registry) == (not operator_disabled and not worker_paused)


def test_a_notice_for_a_worker_not_connected_is_refused() -> None:
    updates = WorkerUpdates(WorkerRegistry())
    with pytest.raises(ValueError, match="not connected"):
        updates.apply("ghost", {"coefficient": 1, "max_active_requests": 1, "accepting": True})
    with pytest.raises(ValueError, match="no connected worker"):
        updates.set_by_operator("ghost", False)
