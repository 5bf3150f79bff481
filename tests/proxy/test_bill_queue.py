"""Group commit of bills: concurrent bills share durable commits; each still succeeds or fails alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cocoon.proxy.bill_queue import BillQueue
from cocoon.proxy.errors import LedgerError, RequestConflict
from cocoon.proxy.ledger import AsyncLedger, RequestState, Settlement
from cocoon.proxy.pricing import PriceParams, TokenCounts, price

PARAMS = PriceParams(price_per_token=2000, worker_fee_per_token=1000)
USAGE = TokenCounts(prompt=10, completion=5)
CHARGE = price(USAGE, 1000, PARAMS)


async def _books(tmp_path: Path, requests: int) -> AsyncLedger:
    books = AsyncLedger.open(tmp_path / "ledger.sqlite")
    await books.ensure_client("app", credit=10**12, now=1.0)
    for i in range(requests):
        await books.reserve(f"r{i}", "app", 10**6, 1.0)
    return books


def _queue(books: AsyncLedger) -> BillQueue:
    return BillQueue(lambda: books)


async def test_concurrent_bills_share_commits_and_are_all_written(tmp_path: Path) -> None:
    books = await _books(tmp_path, 40)
    try:
        queue, groups_before = _queue(books), books.groups
        bills = [Settlement(f"r{i}", "worker", CHARGE, ok=i % 2 == 0, usage=USAGE) for i in range(40)]
        records = await asyncio.gather(*(queue.write(b) for b in bills))
        assert [r.state for r in records] == [
            RequestState.SETTLED if i % 2 == 0 else RequestState.FAILED for i in range(40)
        ]
        assert queue.bills == 40 and 1 <= books.groups - groups_before < 40
        totals = await books.client_totals("app")
        assert totals.cost_nano == 40 * CHARGE.client_cost_nano and totals.reserved_nano == 0
    finally:
        await books.aclose()


async def test_a_refused_bill_fails_alone(tmp_path: Path) -> None:
    books = await _books(tmp_path, 2)
    try:
        queue = _queue(books)
        good = queue.write(Settlement("r0", "worker", CHARGE, usage=USAGE))
        unknown = queue.write(Settlement("nope", "worker", CHARGE, usage=USAGE))
        results = await asyncio.gather(good, unknown, return_exceptions=True)
        assert getattr(results[0], "state", None) is RequestState.SETTLED
        assert isinstance(results[1], LedgerError)
        await queue.write(Settlement("r1", "worker", CHARGE, usage=USAGE))
        with pytest.raises(RequestConflict):  # a second, different bill for a settled request
            await queue.write(Settlement("r1", "worker", CHARGE, ok=False, usage=USAGE))
    finally:
        await books.aclose()


async def test_a_failed_commit_fails_every_bill_of_its_batch(tmp_path: Path) -> None:
    books = await _books(tmp_path, 3)
    await books.aclose()  # the store is closed: every write is refused
    queue = _queue(books)
    results = await asyncio.gather(
        *(queue.write(Settlement(f"r{i}", "worker", CHARGE, usage=USAGE)) for i in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(r, LedgerError) for r in results)
