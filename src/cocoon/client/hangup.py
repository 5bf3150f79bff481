"""Noticing that the app hung up while an answer is in flight: one watcher task per answer.

ASGI servers do not fail a ``send`` to a closed connection (uvicorn drops it); the only sign is
``http.disconnect`` from ``receive``. :class:`HangUp` waits for it in one small task and cancels
the task doing the work, which runs on in the caller's own task (no second task, no
``asyncio.wait``, no anyio task group per response). Leaving the block swallows only the
cancellation it caused, as ``asyncio.timeout`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any

__all__ = ["HangUp", "Receive"]

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class HangUp:
    """``async with HangUp(receive) as hang:`` — the block is cancelled when the app hangs up, and
    ``hang.hung_up`` says so afterwards. Call :meth:`finishing` before the answer's last ``send``:
    a server also reports ``http.disconnect`` once the response is complete."""

    __slots__ = ("_finishing", "_receive", "_task", "_watch", "hung_up")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task: asyncio.Task[Any] | None = None
        self._watch: asyncio.Future[None] | None = None
        self._finishing = False
        self.hung_up = False

    async def __aenter__(self) -> HangUp:
        self._task = asyncio.current_task()
        self._watch = asyncio.ensure_future(self._wait())
        return self

    def finishing(self) -> None:
        self._finishing = True

    async def _wait(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass  # a pipelined request's body is not ours: only the disconnect counts
        if not self._finishing and self._task is not None:
            self.hung_up = True
            self._task.cancel()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self._finishing = True
        if self._watch is not None:
            self._watch.cancel()
        # Ours: take back the one cancellation we sent (others still stand), swallow it if it is all.
        return (
            self.hung_up
            and self._task is not None
            and self._task.uncancel() == 0
            and kind is asyncio.CancelledError
        )
