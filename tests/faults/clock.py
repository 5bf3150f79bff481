"""An injected wall clock for whole in-process networks: ``time.time()`` plus an offset the test
moves, while ``time.monotonic()`` (asyncio's timers, keep-alives, back-offs) runs on. That is what a
host sees when its wall clock steps (NTP) or it wakes from a suspend. Every node reads wall time
through ``time.time()``, so patching it moves them all at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

__all__ = ["WallClock", "install_clock", "wait_for"]

DAY = 86_400


class WallClock:
    def __init__(self) -> None:
        self._real = time.time
        self.offset = 0.0

    def __call__(self) -> float:
        return self._real() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def install_clock(monkeypatch: pytest.MonkeyPatch) -> WallClock:
    clock = WallClock()
    monkeypatch.setattr(time, "time", clock)
    return clock


async def wait_for(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Until ``check()`` holds (polled on the event loop), or fail after ``timeout`` real seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not check():  # noqa: ASYNC110 - the nodes change state on their own tasks
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None
