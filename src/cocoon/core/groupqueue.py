"""Calls from event loops run on one worker thread, a group at a time (group commit).

A store whose commit costs a disk sync (the proxy's billing store, the embedded chain) runs on a thread
of its own; calls that queue up while it is busy run next as one group, so one commit and one sync serve
them all. Each caller still gets its own result or its own exception, and only once the whole group is
done. A caller that is cancelled does not cancel its call: a money movement is never half done.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

__all__ = ["GroupQueue"]

C = TypeVar("C")

# Runs one group on the worker thread: one result per call, in order; an exception object as a result is
# raised to that call's caller. An exception raised by the runner itself fails the whole group with it.
RunGroup = Callable[[list[C]], Sequence[Any]]


class GroupQueue(Generic[C]):
    """``await submit(call)`` from any event loop; ``run_group`` runs the queued calls on ``executor``."""

    def __init__(self, executor: Executor, run_group: RunGroup[C], *, max_group: int) -> None:
        self._executor = executor
        self._run_group = run_group
        self._max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[tuple[C, asyncio.AbstractEventLoop, asyncio.Future[Any]]] = []
        self._draining = False  # a drain is submitted to the executor
        self.groups = 0  # groups run (a view for tests and operators)

    async def submit(self, call: C, *, inline: bool = False) -> Any:
        """``inline``: when nothing is queued or running, run the call as its own group right here on
        the caller's thread (no hop to the worker and back); only for calls that never block long
        (no disk sync), or when the caller's loop has nothing else to do meanwhile. Otherwise it queues like any call, so call order is kept either way."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            idle = not self._draining
            alone = inline and idle  # then this caller runs it: the worker does not start meanwhile
            if not alone:
                self._queue.append((call, loop, done))
            self._draining = True
        if alone:
            return self._run_alone(call)
        if idle:
            self._executor.submit(self._drain)
        # A cancelled caller cancels only its wait: the call still runs to its end on the worker
        # (nothing there is cancelled), and its answer is dropped (_answer skips a done future).
        return await done

    def _run_alone(self, call: C) -> Any:
        """The inline group of :meth:`submit`: run, then hand what queued meanwhile to the worker."""
        self.groups += 1
        try:
            (result,) = self._run_group([call])
        except BaseException as exc:  # the runner failed: so did the call
            result = exc
        finally:
            with self._lock:
                more = bool(self._queue)
                self._draining = more
            if more:
                self._executor.submit(self._drain)
        if isinstance(result, BaseException):
            raise result
        return result

    def _drain(self) -> None:
        """On the worker thread: run what is queued, a group at a time, until nothing is left."""
        while True:
            with self._lock:
                batch, self._queue = self._queue[: self._max_group], self._queue[self._max_group :]
                if not batch:
                    self._draining = False
                    return
            self.groups += 1
            try:
                results: Sequence[Any] = self._run_group([call for call, _, _ in batch])
            except BaseException as exc:  # the runner failed: so did every call of the group
                results = [exc] * len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
            for (_, loop, done), result in zip(batch, results, strict=True):
                by_loop.setdefault(loop, []).append((done, result))
            for loop, answers in by_loop.items():
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for these answers
                    loop.call_soon_threadsafe(_answer, answers)


def _answer(answers: list[tuple[asyncio.Future[Any], Any]]) -> None:
    """On the caller's loop: hand each call its result, or raise its exception there."""
    for done, result in answers:
        if done.done():
            continue
        if isinstance(result, BaseException):
            done.set_exception(result)
        else:
            done.set_result(result)
