"""GroupQueue: calls that queue while the thread is busy run as one group; each caller gets its own answer."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from cocoon.core.groupqueue import GroupQueue


class _Store:
    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def run_group(self, calls: list[int]) -> list[object]:
        self.entered.set()
        self.gate.wait(5)
        self.groups.append(calls)
        if -1 in calls:
            raise OSError("disk gone")
        return [ValueError(f"bad {c}") if c < 0 else c * 10 for c in calls]


async def test_calls_queued_behind_a_busy_group_run_as_the_next_group() -> None:
    store = _Store()
    with ThreadPoolExecutor(max_workers=1) as pool:
        queue: GroupQueue[int] = GroupQueue(pool, store.run_group, max_group=8)
        first = asyncio.ensure_future(queue.submit(1))
        await asyncio.to_thread(store.entered.wait, 5)  # the thread took the first group, waits on the gate
        rest = [asyncio.ensure_future(queue.submit(n)) for n in (2, 3, -4)]
        await asyncio.sleep(0)  # all three queued
        store.gate.set()
        assert await first == 10
        assert await rest[0] == 20 and await rest[1] == 30
        with pytest.raises(ValueError, match="bad -4"):
            await rest[2]  # its own failure, the others of its group still answered
    assert store.groups == [[1], [2, 3, -4]]
    assert queue.groups == 2


async def test_a_failing_runner_fails_every_call_of_its_group_and_a_cancelled_caller_still_runs() -> None:
    store = _Store()
    store.gate.set()
    with ThreadPoolExecutor(max_workers=1) as pool:
        queue: GroupQueue[int] = GroupQueue(pool, store.run_group, max_group=8)
        with pytest.raises(OSError, match="disk gone"):
            await queue.submit(-1)
        store.gate.clear()
        cancelled = asyncio.ensure_future(queue.submit(7))
        await asyncio.sleep(0)
        cancelled.cancel()
        store.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert await queue.submit(8) == 80
    assert any(7 in group for group in store.groups)  # the cancelled caller's call ran all the same


async def test_an_inline_call_runs_on_the_callers_thread_only_when_the_queue_is_idle() -> None:
    store, threads = _Store(), []
    store.gate.set()

    def run_group(calls: list[int]) -> list[object]:
        threads.append(threading.get_ident())
        return store.run_group(calls)

    with ThreadPoolExecutor(max_workers=1) as pool:
        queue: GroupQueue[int] = GroupQueue(pool, run_group, max_group=8)
        assert await queue.submit(1, inline=True) == 10  # idle: run right here, no hop
        assert threads == [threading.get_ident()]
        with pytest.raises(ValueError, match="bad -2"):  # its error is raised to its caller
            await queue.submit(-2, inline=True)
        store.gate.clear()
        store.entered.clear()
        first = asyncio.ensure_future(queue.submit(3))
        await asyncio.to_thread(store.entered.wait, 5)  # the worker runs a group: inline calls queue
        behind = asyncio.ensure_future(queue.submit(4, inline=True))
        await asyncio.sleep(0)
        assert not behind.done()
        store.gate.set()
        assert (await first, await behind) == (30, 40)
        assert store.groups == [[1], [-2], [3], [4]]  # call order kept
        assert threads[-1] != threading.get_ident()  # the queued inline call ran on the worker
        assert queue.groups == 4
