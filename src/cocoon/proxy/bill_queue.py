"""Bills of concurrent requests written together: one durable commit for a whole batch (group commit).

A durable commit costs one disk sync (~5 ms on a virtual disk); written one by one, bills would queue
behind each other's syncs on the store's single writer. :class:`BillQueue` collects the bills that
arrive while a batch is being written and writes them as the next batch with
:meth:`~cocoon.proxy.ledger.BillingLedger.settle_many` (each bill succeeds or fails on its own). With
one request at a time a batch is one bill: nothing waits longer than it would alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cocoon.proxy.errors import LedgerError
from cocoon.proxy.ledger import AsyncLedger, RequestRecord, Settlement

__all__ = ["BillQueue"]


class BillQueue:
    def __init__(
        self,
        books: Callable[[], AsyncLedger],
        *,
        run: Callable[[Awaitable[None]], asyncio.Future[Any]],
        max_batch: int = 64,
    ) -> None:
        """``run`` starts the writer as a task its owner waits for before the store closes."""
        if max_batch < 1:
            raise ValueError("max_batch must be ≥ 1")
        self._books = books
        self._run = run
        self._max_batch = max_batch
        self._pending: list[tuple[Settlement, asyncio.Future[RequestRecord]]] = []
        self._writing = False
        self.batches = 0  # batches written (a view for tests and the operator)

    async def write(self, bill: Settlement) -> RequestRecord:
        """Write ``bill`` durably with the next batch; raises the :class:`LedgerError` it met."""
        done: asyncio.Future[RequestRecord] = asyncio.get_running_loop().create_future()
        self._pending.append((bill, done))
        if not self._writing:
            self._writing = True
            self._run(self._write_batches())
        return await asyncio.shield(done)  # a cancelled caller's bill is still written

    async def _write_batches(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                await self._write_batch(batch)
        finally:
            self._writing = False

    async def _write_batch(self, batch: list[tuple[Settlement, asyncio.Future[RequestRecord]]]) -> None:
        self.batches += 1
        try:
            results = await self._books().settle_many([bill for bill, _ in batch], time.time())
        except LedgerError as exc:  # the whole commit failed (disk full, store closed)
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        except BaseException as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(LedgerError(f"billing store failed: {exc!r}"))
            raise
        for (_, done), result in zip(batch, results, strict=True):
            if done.done():
                continue
            if isinstance(result, LedgerError):
                done.set_exception(result)
            else:
                done.set_result(result)
