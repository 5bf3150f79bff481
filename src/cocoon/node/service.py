"""The one lifecycle every node follows, and the background tasks it owns.

A service subclass implements :meth:`Service._open` (open ports, dial peers, start loops with
:meth:`Service.spawn`, and register each clean-up on the exit stack it is given) and optionally
:meth:`Service._drain` (finish running work before the clean-ups run). The base does the rest:

- ``start()`` runs once (NEW → STARTING → RUNNING); if ``_open`` fails, everything it had opened
  is released and the service is STOPPED;
- ``stop()`` is idempotent (RUNNING → STOPPING → STOPPED): drain, cancel and await every spawned
  task, then unwind the exit stack in reverse order.

Why not ``asyncio.TaskGroup``: a group must be entered and left by the same task, and a failing
child cancels that task. A service is started by one task and stopped by another (a signal handler,
a test), and one failing background loop must not kill whoever called ``start()``. The owned task
set gives the guarantee that matters — no task outlives the service, none is lost unawaited, each
failure is logged — without those two properties.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, ClassVar, Self

from cocoon.core.heaptrim import trim_when_quiet
from cocoon.node.lifecycle import ServiceState, check_can_start

__all__ = ["Service"]


class Service:
    """Base of the worker, proxy and client: lifecycle plus owned background tasks."""

    role: ClassVar[str] = "service"

    def __init__(self, *, logger: logging.Logger | None = None) -> None:
        self.state = ServiceState.NEW
        self.log = logger or logging.getLogger(f"cocoon.{self.role}")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._exit_stack = contextlib.AsyncExitStack()

    # -- what subclasses provide -------------------------------------------------------------------

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        """Open everything the service needs; register each clean-up on ``stack``."""

    async def _drain(self) -> None:
        """Finish running work before the clean-ups run (default: nothing to finish)."""

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        check_can_start(self.role, self.state)
        self.state = ServiceState.STARTING
        try:
            await self._open(self._exit_stack)
        except BaseException:
            await self._close()
            raise
        self.spawn(trim_when_quiet(), name="heap-trim")  # RSS back near idle after a burst
        self.state = ServiceState.RUNNING

    async def stop(self) -> None:
        if self.state in (ServiceState.STOPPED, ServiceState.STOPPING):
            return
        self.state = ServiceState.STOPPING
        try:
            await self._drain()
        finally:
            await self._close()

    async def _close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._exit_stack.aclose()
        finally:
            self.state = ServiceState.STOPPED

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- owned tasks -------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background for as long as the service lives (cancelled on stop)."""
        task = asyncio.create_task(coro, name=f"{self.role}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.log.error("%s failed: %s", task.get_name(), exc, exc_info=exc)

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        """The background tasks running now (for health views and tests)."""
        return frozenset(self._tasks)
