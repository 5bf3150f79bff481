"""One loop timer for the keep-alive checks of every link on a loop: a heap of wake-ups.

A TimerHandle per link, re-armed on every check, was ~0.5 KiB per idle link end on uvloop (the
handle and its libuv timer); a heap entry is a small slotted object and its deadline. The loop
timer is armed only for the earliest entry. A cancelled entry drops its target at once (nothing
stays alive through it) and is discarded when its time comes; a loop with no live entry left
holds neither timer nor heap.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["Wakeup", "cancel", "schedule"]

log = logging.getLogger(__name__)

# Entries due this close to now run in this pass: a loop timer may fire up to a clock tick early
# (uvloop counts milliseconds). Callbacks see the real time, so nothing happens before it is due.
_SLACK = 0.001

Callback = Callable[[Any, float], float | None]  # (target, now) -> when to call again, or None: done


class Wakeup:
    """One target's pending call: ``callback(target, now)`` at ``when`` (loop time)."""

    __slots__ = ("callback", "target", "when")

    def __init__(self, when: float, target: object, callback: Callback) -> None:
        self.when = when
        self.target: object | None = target  # None: cancelled or done
        self.callback = callback

    def __lt__(self, other: Wakeup) -> bool:
        return self.when < other.when


class _Wheel:
    """A loop's wake-ups: the heap, how many are live, and the one loop timer."""

    __slots__ = ("heap", "live", "loop", "timer", "timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.heap: list[Wakeup] = []
        self.live = 0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    def arm(self) -> None:
        if not self.heap:
            return
        when = self.heap[0].when
        if self.timer is not None:
            if self.timer_at <= when:
                return
            self.timer.cancel()
        self.timer_at = when
        self.timer = self.loop.call_at(when, self.fire)

    def fire(self) -> None:
        self.timer = None
        now = self.loop.time()
        heap, due = self.heap, []
        while heap and heap[0].when <= now + _SLACK:
            due.append(heapq.heappop(heap))
        for entry in due:  # popped first: a callback may cancel or schedule others
            target = entry.target
            if target is None:
                continue
            try:
                when = entry.callback(target, now)
            except Exception:  # a bug in one callback must not cost the others due with it their wake-up
                log.exception("wake-up callback %r failed; dropped", entry.callback)
                when = None
            if entry.target is None:  # cancelled by its own callback
                continue
            if when is None:
                entry.target = None
                self.live -= 1
            else:
                entry.when = when
                heapq.heappush(heap, entry)
        if self.live:
            self.arm()
        else:
            self.close()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.heap.clear()
        if _wheels.get(self.loop) is self:
            del _wheels[self.loop]


# Per loop; an entry lives while the loop has a live wake-up (so a closed loop is not kept).
_wheels: dict[asyncio.AbstractEventLoop, _Wheel] = {}


def schedule(loop: asyncio.AbstractEventLoop, when: float, target: object, callback: Callback) -> Wakeup:
    """Call ``callback(target, now)`` at loop time ``when``, and again at each time it returns."""
    wheel = _wheels.get(loop)
    if wheel is None:
        for stale in [old for old in _wheels if old.is_closed()]:  # closed with links still on it
            del _wheels[stale]
        wheel = _wheels[loop] = _Wheel(loop)
    entry = Wakeup(when, target, callback)
    heapq.heappush(wheel.heap, entry)
    wheel.live += 1
    wheel.arm()
    return entry


def cancel(loop: asyncio.AbstractEventLoop, entry: Wakeup) -> None:
    """Drop ``entry`` (idempotent); the loop timer goes with the loop's last live entry."""
    if entry.target is None:
        return
    entry.target = None
    wheel = _wheels.get(loop)
    if wheel is None:  # pragma: no cover - a live entry's wheel is registered
        return
    wheel.live -= 1
    if not wheel.live:
        wheel.close()
