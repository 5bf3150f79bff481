"""The embedded chain for a service: LocalChain with every call on one thread of its own.

LocalChain runs the TVM and SQLite synchronously (a trace is milliseconds to seconds of CPU), and
its SQLite connection belongs to the thread that opened it. A service that opens the embedded chain
from its settings gets this instead, so chain calls never stall its event loop: one worker thread
opens the LocalChain and runs every call; the loop only awaits them. Same results and errors.

Messages sent while the thread is busy queue up and run as one :meth:`LocalChain.group` (group
commit: one disk sync for all of them); each caller gets its trace, or its own error, once the group
is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from cocoon.chain._ton import Address, Cell
from cocoon.chain.api import AccountState, StackValue, TxRecord
from cocoon.chain.errors import ChainError
from cocoon.chain.localchain import LocalChain, ValueTotals
from cocoon.core.groupqueue import GroupQueue

__all__ = ["ThreadedLocalChain"]

T = TypeVar("T")
MAX_GROUP = 64  # traces in one group commit at most
_Send = Callable[[], Awaitable[list[TxRecord]]]


class ThreadedLocalChain:
    """A :class:`~cocoon.chain.Chain` over a LocalChain file, run on a private thread."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float] | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-chain")
        self._loop: asyncio.AbstractEventLoop | None = None
        try:  # opened here, synchronously, so a bad store fails the caller at once (as LocalChain)
            self._chain = self._pool.submit(self._open, path, clock).result()
        except BaseException:
            self._pool.shutdown(wait=False)
            raise
        self._closed = False
        self._sends: GroupQueue[_Send] = GroupQueue(self._pool, self._run_group, max_group=MAX_GROUP)

    def _open(self, path: Path | str, clock: Callable[[], float] | None) -> LocalChain:
        chain = LocalChain(path, clock=clock)
        self._loop = asyncio.new_event_loop()  # the thread's own, to run LocalChain's coroutines
        return chain

    @property
    def path(self) -> str:
        return self._chain.path

    async def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        if self._closed:
            raise ChainError("the chain is closed")

        def job() -> T:
            assert self._loop is not None
            return self._loop.run_until_complete(call())  # type: ignore[arg-type]

        return await asyncio.get_running_loop().run_in_executor(self._pool, job)

    async def now(self) -> int:
        return await self._run(self._chain.now)

    async def get_account(self, address: Address) -> AccountState:
        return await self._run(lambda: self._chain.get_account(address))

    async def run_get_method(
        self, address: Address, method: str, args: list[int | Cell] | None = None
    ) -> list[StackValue]:
        return await self._run(lambda: self._chain.run_get_method(address, method, args))

    async def totals(self) -> ValueTotals:
        """Value conservation, read on the chain's thread between groups: never mid-group."""
        if self._closed:
            raise ChainError("the chain is closed")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._chain.totals)

    @property
    def groups(self) -> int:
        """Group commits written (a view for tests)."""
        return self._sends.groups

    async def _send(self, call: _Send) -> list[TxRecord]:
        if self._closed:
            raise ChainError("the chain is closed")
        trace: list[TxRecord] = await self._sends.submit(
            call
        )  # a cancelled caller's message is still delivered
        return trace

    def _run_group(self, calls: list[_Send]) -> list[Any]:
        assert self._loop is not None
        results: list[Any] = []
        try:
            with self._chain.group():
                for call in calls:
                    try:
                        results.append(self._loop.run_until_complete(call()))  # type: ignore[arg-type]
                    except Exception as exc:  # that message's own failure (its trace rolled back)
                        results.append(exc)
        except Exception as exc:  # the commit failed: none of the group's traces happened
            return [exc if isinstance(exc, ChainError) else ChainError(f"chain store failed: {exc}")] * len(
                calls
            )
        return results

    async def send_external(self, message: Cell) -> list[TxRecord]:
        return await self._send(lambda: self._chain.send_external(message))

    async def get_transactions(self, address: Address, limit: int = 20) -> list[TxRecord]:
        return await self._run(lambda: self._chain.get_transactions(address, limit))

    async def faucet(self, address: Address, amount: int) -> list[TxRecord]:
        return await self._send(lambda: self._chain.faucet(address, amount))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            self._chain.close()
            if self._loop is not None:
                self._loop.close()

        await asyncio.get_running_loop().run_in_executor(self._pool, close)
        self._pool.shutdown(wait=True)

    async def __aenter__(self) -> ThreadedLocalChain:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
