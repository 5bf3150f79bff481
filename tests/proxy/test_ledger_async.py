"""AsyncLedger: the store's methods as coroutines; every write on one writer thread, reads concurrent."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from cocoon.proxy.errors import InsufficientFunds, LedgerError
from cocoon.proxy.ledger import AsyncLedger, BillingLedger, RequestState

from .helpers import PARAMS, TON, charge_of, funded_ledger


def _spy_writes(ledger: BillingLedger) -> list[str]:
    """Record the thread name of every write transaction."""
    names: list[str] = []
    original = ledger._tx

    def tx(*, durable: bool = True):  # type: ignore[no-untyped-def]
        names.append(threading.current_thread().name)
        return original(durable=durable)

    ledger._tx = tx  # type: ignore[method-assign]
    return names


async def test_writes_run_on_one_writer_thread(tmp_path: Path) -> None:
    async with AsyncLedger(funded_ledger(tmp_path / "b.db", "alice")) as led:
        writers = _spy_writes(led.sync)
        await asyncio.gather(*(led.reserve(f"r{i}", "alice", 10**6, 1.0) for i in range(20)))
        await asyncio.gather(
            *(led.settle(f"r{i}", "w1", charge_of(i, i), 2.0) for i in range(10)),
            *(led.fail(f"r{i}", None, now=2.0) for i in range(10, 20)),
        )
        await led.bump_seqno(3.0)
        assert len(writers) == 41
        # Durable writes run on the one writer thread, never on the loop's.
        durable = set(writers[20:])
        assert len(durable) == 1 and durable.pop().startswith("ledger-writer")
        assert threading.current_thread().name not in writers[20:]
        # A reservation (no disk sync) runs on the loop itself when the writer is idle, else on it.
        assert set(writers[:20]) <= {threading.current_thread().name, writers[20]}
        totals = await led.client_totals("alice")
        assert totals.reserved_nano == 0 and totals.tokens == sum(
            charge_of(i, i).total_adjusted for i in range(10)
        )
        stats = await led.statistics()
        assert (stats.requests_settled, stats.requests_failed, await led.seqno()) == (10, 10, 1)
        with pytest.raises(InsufficientFunds):  # errors come back as the same exceptions
            await led.reserve("big", "alice", 100 * TON, 4.0)


async def test_reads_do_not_wait_for_the_writer(tmp_path: Path) -> None:
    async with AsyncLedger(funded_ledger(tmp_path / "b.db", "alice")) as led:
        await led.reserve("r1", "alice", 10**6, 1.0)
        gate = threading.Event()
        blocked = asyncio.ensure_future(led._on_writer(gate.wait))  # the writer is busy
        pending_write = asyncio.ensure_future(led.settle("r1", "w1", charge_of(1, 1), 2.0))
        # Reads still answer, from the last committed state.
        rec = await asyncio.wait_for(led.request("r1"), 10)
        assert rec is not None and rec.state is RequestState.RESERVED
        assert (await asyncio.wait_for(led.available("alice"), 10)) == 10 * TON - 10**6
        assert not pending_write.done()
        gate.set()
        await blocked
        done = await pending_write
        assert done.state is RequestState.SETTLED


async def test_progress_and_recovery_through_the_async_store(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    async with AsyncLedger(funded_ledger(path, "alice")) as led:
        await led.reserve("r1", "alice", 10**8, 1.0)
        await led.assign_worker("r1", "w1", coefficient=1000, params=PARAMS, now=1.0)
        await led.record_progress("r1", prompt_tokens=7, completion_tokens=3, now=2.0)
    async with AsyncLedger.open(path) as led:
        assert await led.release_stale(now=5.0, older_than=5.0) == ["r1"]
        rec = await led.request("r1")
        assert rec is not None and rec.charge == charge_of(7, 3)


async def test_closed_store_refuses(tmp_path: Path) -> None:
    led = AsyncLedger(funded_ledger(tmp_path / "b.db", "alice"))
    await led.aclose()
    await led.aclose()  # idempotent
    with pytest.raises(LedgerError):
        await led.reserve("r1", "alice", 1, 1.0)
    with pytest.raises(LedgerError):
        await led.client_totals("alice")
