"""A lazy ``asyncio.Event``: nothing but a bool until someone waits.

An asyncio.Event holds a deque (~600 B on the heap) from birth; a link keeps three and almost never
waits on them while idle, so per idle link they were ~4 KiB of its memory. :class:`Flag` keeps the
same contract (``set`` wakes every waiter, ``clear`` does not un-wake them, ``wait`` returns at once
while set) and makes a future only for a waiter.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Flag"]


class Flag:
    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            with contextlib.suppress(ValueError):  # already taken by set()
                waiters.remove(waiter)
            if not waiters and self._waiters is waiters:
                self._waiters = None

    def __repr__(self) -> str:
        waiting = len(self._waiters or ())
        return f"<Flag {'set' if self._set else 'unset'}, {waiting} waiting>"
