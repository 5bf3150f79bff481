"""A partition between proxy and worker (a relay process dropped or stalled) and a slow worker.

Requests through a broken path end with a clean error before their deadline; the path heals by itself
(the worker redials) and nothing stays reserved.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from .appcalls import chat
from .procnet import procnet, wait_until

pytestmark = pytest.mark.slow
LONG = os.environ.get("COCOON_LONG_FAULTS") == "1"


async def test_partition_drop_and_stall(tmp_path: Path) -> None:
    with procnet(tmp_path) as net:
        upstream = net.launch_upstream(chunks=20, delay=0.05)  # ~1 s per answer
        proxy = net.proxy(wait=False)
        url = net.upstream_url(upstream)
        net.wait_proxy(proxy)
        relay = net.relay(proxy.ports["worker_port"])
        net.worker("worker-a", relay.ports["listen"], url)
        client = net.client("app", proxy, wait=False)
        net.wait_workers(proxy, 1)
        net.wait_until_client(client)
        base = net.base(client)
        async with httpx.AsyncClient(timeout=None) as http:
            assert (await chat(http, base)).ok

            # Drop: the relay dies with an answer in flight.
            streaming = asyncio.ensure_future(chat(http, base, stream=True, deadline=20))
            await asyncio.sleep(0.4)
            relay.kill9()
            cut = await streaming
            assert not cut.ok and cut.elapsed_s < 10, cut
            net.wait_workers_exactly(proxy, 0, timeout=15)
            refused = await chat(http, base, deadline=10)
            assert not refused.ok and refused.status in (404, 502, 503), refused
            net.start_relay(relay)  # the path heals; nobody restarts the worker
            net.wait_workers(proxy, 1, timeout=30)
            assert (await chat(http, base, deadline=20)).ok

            # Stall: the relay stops forwarding but keeps both connections open.
            relay.pause()
            stalled = await chat(http, base, deadline=15, timeout=2)
            assert not stalled.ok and stalled.elapsed_s < 6, stalled
            assert stalled.status in (502, 503, 504), stalled
            relay.resume()
            healed = await chat(http, base, deadline=20)
            assert healed.ok, healed
        net.wait_until_stats(
            proxy, lambda s: s["billing"]["reserved_nano"] == 0, timeout=10, what="no reservation left"
        )


@pytest.mark.skipif(not LONG, reason="~45 s: run with COCOON_LONG_FAULTS=1")
async def test_long_stall_is_detected_by_keepalive(tmp_path: Path) -> None:
    with procnet(tmp_path) as net:
        upstream = net.launch_upstream(chunks=5, delay=0.01)
        proxy = net.proxy(wait=False)
        url = net.upstream_url(upstream)
        net.wait_proxy(proxy)
        relay = net.relay(proxy.ports["worker_port"])
        net.worker("worker-a", relay.ports["listen"], url)
        client = net.client("app", proxy)
        net.wait_workers(proxy, 1)
        relay.pause()
        # The link's idle timeout (30 s, pings every 10 s) declares it dead; the proxy forgets the worker.
        net.wait_workers_exactly(proxy, 0, timeout=45)
        relay.resume()
        net.wait_workers(proxy, 1, timeout=30)
        async with httpx.AsyncClient(timeout=None) as http:
            assert (await chat(http, net.base(client), deadline=20)).ok


async def test_slow_worker_timeouts_are_honoured(tmp_path: Path) -> None:
    with procnet(tmp_path) as net:
        # Slow to start answering, and slow once it does.
        slow_up = net.launch_upstream("slow-upstream", chunks=3, delay=1.0, open_delay=5.0)
        fast_up = net.launch_upstream("fast-upstream", chunks=3, delay=0.01)
        proxy = net.proxy(wait=False, first_byte_timeout_s=1.0)
        slow_url, fast_url = net.upstream_url(slow_up), net.upstream_url(fast_up)
        net.wait_proxy(proxy)
        net.worker("worker-slow", proxy.ports["worker_port"], slow_url)
        fast = net.worker("worker-fast", proxy.ports["worker_port"], fast_url)
        client = net.client("app", proxy, wait=False)
        net.wait_workers(proxy, 2)
        net.wait_until_client(client)
        base = net.base(client)
        async with httpx.AsyncClient(timeout=None) as http:
            # A worker with no first byte within first_byte_timeout_s is skipped for another.
            outcomes = [await chat(http, base, deadline=15) for _ in range(4)]
            assert all(o.ok for o in outcomes), outcomes
            assert all(o.elapsed_s < 3 for o in outcomes), [o.elapsed_s for o in outcomes]
            fast.stop()
            net.wait_workers_exactly(proxy, 1)
            # Only the slow one is left: the app's own timeout ends the request, cleanly.
            late = await chat(http, base, deadline=15, timeout=2)
            assert not late.ok and late.elapsed_s < 4, late
            assert late.status in (429, 502, 503, 504), late  # 429: the slow one is suspended
        net.wait_until_stats(
            proxy, lambda s: s["billing"]["reserved_nano"] == 0, timeout=10, what="no reservation left"
        )

        # The abandoned attempts were cancelled in the slow engine, not left generating.
        def engine_idle() -> bool:
            stats = net.http.get(f"{slow_url}/_stats").json()
            return bool(stats["active"] == 0 and stats["completed"] == 0)

        wait_until(engine_idle, timeout=15, what="the slow engine to be cancelled")
