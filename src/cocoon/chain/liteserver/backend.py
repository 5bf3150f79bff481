# mypy: disable-error-code="no-untyped-call,no-any-return"
# (pytoniq-core ships py.typed but leaves most methods unannotated)
"""The embedded chain behind a development liteserver, on one thread of its own.

LocalChain runs the TVM and SQLite synchronously and its SQLite connection belongs to the thread
that opened it, so one worker thread opens it and runs every call; the server's event loop only
awaits them. Several servers (and `cocoon chain` commands) may share the SQLite file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cocoon.chain._ton import Address, Cell
from cocoon.chain.api import StackValue
from cocoon.chain.localchain import LocalChain

__all__ = ["AccountSnapshot", "ChainBackend", "Head"]

T = TypeVar("T")
LT_PER_TX = 1000  # LocalChain's logical time step; seqno = lt / step numbers the chain's states


@dataclass(frozen=True, slots=True)
class Head:
    """The chain now: its masterchain seqno (moves with every transaction), lt and time."""

    seqno: int
    lt: int
    now: int


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    head: Head
    shard_account: Cell
    exists: bool
    balance: int


class ChainBackend:
    """Async access to one LocalChain file through a single worker thread."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liteserver-chain")
        self._chain: LocalChain | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the worker thread's own, for async calls

    async def start(self) -> None:
        await self._call(self._open)

    def _open(self) -> None:
        self._chain = LocalChain(self._path, clock=self._clock)
        self._loop = asyncio.new_event_loop()

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def _local(self) -> LocalChain:
        assert self._chain is not None, "ChainBackend.start() first"
        return self._chain

    def _head(self) -> Head:
        chain = self._local()
        lt = chain.last_lt()
        return Head(lt // LT_PER_TX, lt, chain.now_sync())

    async def head(self) -> Head:
        return await self._call(self._head)

    async def account(self, address: Address) -> AccountSnapshot:
        def read() -> AccountSnapshot:
            chain = self._local()
            assert self._loop is not None
            shard_account = chain.shard_account(address)
            state = self._loop.run_until_complete(chain.get_account(address))
            return AccountSnapshot(self._head(), shard_account, state.status != "nonexist", state.balance)

        return await self._call(read)

    async def run_get_method(
        self, address: Address, method_id: int, args: list[int | Cell]
    ) -> list[StackValue]:
        return await self._call(lambda: self._local().run_get_method_sync(address, method_id, args))

    async def send_external(self, message: Cell) -> int:
        """Run the message's whole trace; the number of transactions it made."""

        def send() -> int:
            assert self._loop is not None
            return len(self._loop.run_until_complete(self._local().send_external(message)))

        return await self._call(send)

    async def transactions(self, address: Address, max_lt: int, limit: int) -> list[bytes]:
        return await self._call(lambda: self._local().transactions_from(address, max_lt=max_lt, limit=limit))

    async def aclose(self) -> None:
        def close() -> None:
            if self._chain is not None:
                self._chain.close()
            if self._loop is not None:
                self._loop.close()

        await self._call(close)
        self._pool.shutdown(wait=True)
