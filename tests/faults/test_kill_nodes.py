"""kill -9 of a worker, the proxy and the client under load, each node a real process.

After each fault: every request ends (answer or clean error) before its deadline, money is neither lost
nor doubled, and the network serves again without a manual step.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from cocoon.proxy.ledger import BillingLedger

from .appcalls import Outcome, chat
from .procnet import procnet

pytestmark = pytest.mark.slow


async def test_worker_killed_under_load(tmp_path: Path) -> None:
    with procnet(tmp_path) as net:
        # Four slots each: eight concurrent requests are spread over both workers.
        _, proxy, (victim, _), client = net.standard(
            workers=2, upstream={"chunks": 25, "delay": 0.04}, worker={"max_active_requests": 4}
        )  # ~1 s per answer
        base = net.base(client)
        async with httpx.AsyncClient(timeout=None) as http:
            load = [asyncio.ensure_future(chat(http, base, stream=i % 4 < 2, deadline=30)) for i in range(8)]
            await asyncio.sleep(0.5)
            victim.kill9()
            first: list[Outcome] = await asyncio.gather(*load)
            assert all(o.status != 0 for o in first)
            failed = [o for o in first if not o.ok]
            assert failed, "the killed worker was serving some of the requests"
            assert all(o.elapsed_s < 20 for o in first)
            net.wait_workers_exactly(proxy, 1)
            later = await asyncio.gather(
                *(chat(http, base, deadline=30) for _ in range(4))
            )  # within one worker's slots
        assert all(o.ok for o in later), later
        billing = net.stats(proxy)["billing"]
        assert billing["reserved_nano"] == 0
        assert billing["requests_reserved"] == 0
        # Complete answers were billed exactly as the app was told; cut-off ones for what they delivered.
        paid = sum(o.cost_nano for o in first + later if o.ok)
        assert billing["revenue_nano"] >= paid
        assert billing["requests_settled"] == sum(o.ok for o in first + later)


async def test_proxy_killed_during_paid_burst_then_restarted(tmp_path: Path) -> None:
    with procnet(tmp_path) as net:
        _, proxy, _, client = net.standard(
            upstream={"chunks": 10, "delay": 0.03}, worker={"max_active_requests": 16}
        )  # ~0.3 s per answer
        base = net.base(client)
        outcomes: list[Outcome] = []

        async def user(http: httpx.AsyncClient, index: int) -> None:
            for n in range(6):
                outcomes.append(await chat(http, base, stream=(index + n) % 2 == 0, deadline=30))

        async with httpx.AsyncClient(timeout=None) as http:
            burst = asyncio.gather(*(user(http, i) for i in range(6)))
            async with asyncio.timeout(20):  # some answers complete first, whatever the machine's speed
                while len(outcomes) < 6:  # noqa: ASYNC110 - the users append as they go
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)  # and the next ones are in flight
            proxy.kill9()
            await burst
            assert all(o.status != 0 for o in outcomes)
            assert any(o.ok for o in outcomes) and any(not o.ok for o in outcomes)
            net.start_proxy(proxy)  # same ports, same ledger
            net.wait_workers(proxy, 1)
            net.wait_until_client(client)  # reconnects on its own (backoff)
            after = [await chat(http, base, deadline=30) for _ in range(4)]
            assert all(o.ok for o in after), after
        proxy.stop()
        with BillingLedger(tmp_path / "proxy" / "proxy-ledger.sqlite") as ledger:
            totals = ledger.client_totals("app")
            stats = ledger.statistics()
        complete = [o for o in outcomes + after if o.ok]
        told = sum(o.cost_nano for o in complete)
        # Never doubled: every settled request is one complete answer the app received (a kill between the
        # durable settle and the reply could add at most the requests that were in flight).
        assert stats.requests_settled >= len(complete)
        in_flight = sum(not o.ok for o in outcomes)
        assert stats.requests_settled <= len(complete) + in_flight
        per_answer = max(o.cost_nano for o in complete)
        assert told <= totals.cost_nano <= told + in_flight * per_answer


async def test_client_killed_with_streams_in_flight(tmp_path: Path) -> None:
    with procnet(tmp_path) as net:
        url, proxy, _, client = net.standard(upstream={"chunks": 400, "delay": 0.025})  # ~10 s per answer
        base = net.base(client)
        async with httpx.AsyncClient(timeout=None) as http:
            load = [asyncio.ensure_future(chat(http, base, stream=True, deadline=30)) for _ in range(3)]
            # Kill only once all three streams run at the worker (a loaded CI machine may be slow).
            await asyncio.to_thread(
                net.wait_until_stats,
                proxy,
                lambda s: s["workers"]["running"] >= 3,
                timeout=20,
                what="three streams in flight",
            )
            client.kill9()
            outcomes = await asyncio.gather(*load)
        assert not any(o.ok for o in outcomes)
        net.wait_until_stats(
            proxy,
            lambda s: s["billing"]["reserved_nano"] == 0 and s["billing"]["requests_reserved"] == 0,
            timeout=20,
            what="the proxy to release the dead client's reservations",
        )
        stats = net.stats(proxy)
        assert stats["requests"]["cancelled"] + stats["requests"]["failed"] >= 3
        # The engine stopped generating: nothing ran to completion.
        engine = net.http.get(f"{url}/_stats").json()
        assert engine["completed"] == 0
        assert engine["cancelled"] >= 3 or engine["opened"] == 0, engine
        # The client comes back (same home, same address) and is served; the dead one's partial
        # answers were billed for what was delivered, not more.
        billing = net.stats(proxy)["billing"]
        assert billing["requests_settled"] == 0
        cut_off = billing["revenue_nano"]
        client.start()  # same home and address: the app's client comes back and sees the models
        net.wait_until_client(client)
        models = net.http.get(f"{base}/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["fault-model"]
        assert net.stats(proxy)["billing"]["revenue_nano"] == cut_off
