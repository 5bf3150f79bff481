"""The loop's shared wake-up heap under every link's keep-alive: one timer, exact order, no leftovers."""

from __future__ import annotations

import asyncio

import pytest

from cocoon.net import wakeups


async def test_wakeups_run_in_deadline_order_on_one_loop_timer_and_repeat_until_done() -> None:
    loop = asyncio.get_running_loop()
    calls: list[tuple[str, float]] = []
    start = loop.time()

    def tick(name: object, now: float) -> float | None:
        assert isinstance(name, str)
        calls.append((name, now - start))
        return now + 0.05 if name == "b" and len(calls) < 3 else None

    entries = [
        wakeups.schedule(loop, start + delay, name, tick) for name, delay in (("a", 0.06), ("b", 0.02))
    ]
    wheel = wakeups._wheels[loop]
    assert wheel.timer is not None and wheel.timer_at == start + 0.02  # armed for the earliest only
    await asyncio.sleep(0.2)
    assert [name for name, _ in calls] == ["b", "a", "b"]
    assert calls[0][1] >= 0.02 - wakeups._SLACK and calls[1][1] >= 0.06 - wakeups._SLACK  # never early
    assert calls[2][1] >= calls[0][1] + 0.05 - wakeups._SLACK  # again at the time it returned
    assert all(entry.target is None for entry in entries)
    assert loop not in wakeups._wheels  # nothing live: no timer, no heap kept for the loop


async def test_a_cancelled_wakeup_drops_its_target_at_once_and_never_runs() -> None:
    loop = asyncio.get_running_loop()
    ran: list[object] = []
    target = object()
    entry = wakeups.schedule(loop, loop.time() + 0.02, target, lambda t, now: ran.append(t))
    keep = wakeups.schedule(loop, loop.time() + 0.04, "kept", lambda t, now: ran.append(t))
    wakeups.cancel(loop, entry)
    wakeups.cancel(loop, entry)  # idempotent
    assert entry.target is None  # the heap no longer keeps the target alive
    await asyncio.sleep(0.08)
    assert ran == ["kept"] and keep.target is None
    assert loop not in wakeups._wheels


async def test_an_earlier_wakeup_rearms_the_loop_timer() -> None:
    loop = asyncio.get_running_loop()
    ran: list[str] = []

    def tick(name: object, now: float) -> None:
        ran.append(str(name))

    late = wakeups.schedule(loop, loop.time() + 5, "late", tick)
    wakeups.schedule(loop, loop.time() + 0.01, "soon", tick)
    await asyncio.sleep(0.05)
    assert ran == ["soon"]
    wakeups.cancel(loop, late)
    assert loop not in wakeups._wheels


async def test_a_callback_that_raises_is_dropped_and_the_others_due_with_it_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    ran: list[str] = []
    done = asyncio.Event()

    def broken(_t: object, _now: float) -> float | None:
        raise RuntimeError("a bug")

    def fine(name: object, now: float) -> float | None:
        ran.append(str(name))
        if len(ran) == 2:
            done.set()
            return None
        return now + 0.01

    at = loop.time() + 0.01
    failing = wakeups.schedule(loop, at, "broken", broken)
    kept = wakeups.schedule(loop, at, "fine", fine)  # due in the same pass, after the broken one
    with caplog.at_level("ERROR", logger="cocoon.net.wakeups"):
        await asyncio.wait_for(done.wait(), 2)
    assert ran == ["fine", "fine"] and failing.target is None and kept.target is None
    assert "wake-up callback" in caplog.text and "a bug" in caplog.text
    assert loop not in wakeups._wheels
