"""The heap is given back once a busy spell ends, once, and never while the node is busy."""

from __future__ import annotations

import gc

import pytest

from cocoon.core import heaptrim
from cocoon.core.heaptrim import QuietTrim
from cocoon.localnet.bench.idlelinks import rss_kib
from cocoon.node.service import Service


def _ticks(decider: QuietTrim, cpu_per_tick: list[float]) -> list[bool]:
    """Feed one-second ticks using the given CPU seconds each; the decisions."""
    cpu, out = 0.0, []
    decider.observe(cpu, 0.0)
    for second, used in enumerate(cpu_per_tick, start=1):
        cpu += used
        out.append(decider.observe(cpu, float(second)))
    return out


def test_one_trim_on_the_first_quiet_tick_after_a_burst() -> None:
    decisions = _ticks(QuietTrim(), [0.9, 0.8, 0.7, 0.01, 0.0, 0.0])
    assert decisions == [False, False, False, True, False, False]


def test_steady_traffic_is_never_trimmed_and_idle_is_trimmed_once() -> None:
    assert not any(_ticks(QuietTrim(), [0.3] * 20))  # busy the whole time: nothing to give back yet
    assert not any(_ticks(QuietTrim(), [0.001] * 20))  # never busy: nothing freed to give back


def test_small_spells_add_up_before_a_trim() -> None:
    # three short spells of 0.2 s CPU each, quiet between: the third brings the work past 0.5 s
    decisions = _ticks(QuietTrim(min_work_s=0.5), [0.2, 0.0, 0.2, 0.0, 0.2, 0.0])
    assert decisions == [False, False, False, False, False, True]


def test_a_clock_that_does_not_move_decides_nothing() -> None:
    decider = QuietTrim()
    decider.observe(0.0, 5.0)
    assert decider.observe(1.0, 5.0) is False and decider.observe(1.0, 4.0) is False


@pytest.mark.skipif(heaptrim._MALLOC_TRIM is None, reason="this C library has no malloc_trim")
def test_freed_memory_goes_back_to_the_os(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heaptrim, "_last_trim", -heaptrim.MIN_GAP_S)
    blocks = [bytes(2048) + bytes([i % 256]) for i in range(20_000)]  # ~40 MiB of malloc'd buffers
    kept = blocks[::64]  # a few survivors scattered through the heap keep glibc from shrinking it
    del blocks
    gc.collect()
    held = rss_kib()
    assert heaptrim.release_free_heap() is True
    assert held - rss_kib() > 20 * 1024, "malloc_trim gave back less than half of what was freed"
    assert heaptrim.release_free_heap() is False  # the next within MIN_GAP_S is skipped
    assert len(kept) == 313


async def test_every_started_node_runs_the_trimmer() -> None:
    async with Service() as service:
        assert any(t.get_name() == "service-heap-trim" for t in service.tasks)
    assert not service.tasks
