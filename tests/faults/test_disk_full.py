"""The proxy's billing store on a full disk: paid work is refused with a clear error, never served unbilled,
and service resumes by itself once space is back.

A full disk is emulated per process with RLIMIT_FSIZE (no root or tmpfs needed): the proxy's writes past
the limit fail with EFBIG exactly where ENOSPC would fail them. Raising the limit (prlimit) frees the disk.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from cocoon.proxy.ledger import BillingLedger

from .appcalls import chat
from .procnet import procnet

pytestmark = pytest.mark.slow


async def test_full_disk_refuses_paid_requests_and_recovers(tmp_path: Path) -> None:
    with procnet(tmp_path) as net:
        _, proxy, _, client = net.standard(upstream={"chunks": 3})
        base = net.base(client)
        store = tmp_path / "proxy" / "proxy-ledger.sqlite"
        async with httpx.AsyncClient(timeout=None) as http:
            before = [await chat(http, base) for _ in range(3)]
            assert all(o.ok for o in before), before
            # Disk full: no file of the proxy may grow any further.
            sizes = [p.stat().st_size for p in store.parent.glob("proxy-ledger.sqlite*")]
            log_size = proxy.log.stat().st_size
            proxy.set_file_size_limit(max([*sizes, log_size + 4096]))
            refused = [await chat(http, base, deadline=20, allow_500=True) for _ in range(4)]
            assert not any(o.ok for o in refused), "served while the billing store cannot record it"
            assert all(o.status in (500, 503) for o in refused), refused
            assert all("billing" in o.error or "store" in o.error for o in refused), refused
            # Space is back: the proxy serves again with no restart.
            proxy.set_file_size_limit(None)

            after = []
            for _ in range(20):
                outcome = await chat(http, base, deadline=20, allow_500=True)
                if outcome.ok:
                    after.append(outcome)
                if len(after) == 3:
                    break
            assert len(after) == 3, "the proxy did not recover once the disk had space again"
        proxy.stop()
        with BillingLedger(store) as ledger:
            totals = ledger.client_totals("app")
            stats = ledger.statistics()
        told = sum(o.cost_nano for o in before + after)
        assert totals.cost_nano == told
        assert stats.requests_settled == len(before) + len(after)
        assert totals.reserved_nano == 0


async def test_disk_fills_while_answers_are_in_flight(tmp_path: Path) -> None:
    with procnet(tmp_path) as net:
        _, proxy, _, client = net.standard(upstream={"chunks": 10, "delay": 0.08})  # ~0.8 s per answer
        base = net.base(client)
        store = tmp_path / "proxy" / "proxy-ledger.sqlite"
        async with httpx.AsyncClient(timeout=None) as http:
            assert (await chat(http, base)).ok
            flights = [
                asyncio.ensure_future(chat(http, base, stream=i % 2 == 1, deadline=20, allow_500=True))
                for i in range(4)
            ]
            await asyncio.sleep(0.4)  # reserved, answering: the settle will hit the full disk
            sizes = [p.stat().st_size for p in store.parent.glob("proxy-ledger.sqlite*")]
            proxy.set_file_size_limit(max([*sizes, proxy.log.stat().st_size + 4096]))
            outcomes = await asyncio.gather(*flights)
            # Not billable, so not delivered: a complete answer would be an unbilled one.
            assert not any(o.ok for o in outcomes), outcomes
            proxy.set_file_size_limit(None)
            # Recovers by itself, at once: the store's failures were not the worker's.
            after = await chat(http, base, deadline=20)
            assert after.ok, after
        # Without a restart, nothing stays reserved once the disk has room again.
        net.wait_until_stats(
            proxy,
            lambda s: s["billing"]["reserved_nano"] == 0 and s["billing"]["requests_reserved"] == 0,
            timeout=10,
            what="reservations of the failed settles to be released",
        )
