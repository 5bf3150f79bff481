"""A burst at c=128 of 500-event answers through client → proxy → worker, each its own process:
every request is answered, and each node's memory comes back near its idle level afterwards.

A bench, not part of ``make test`` (about 40 s on two shared cores):
``.venv/bin/python -m pytest tests/localnet/bench_burst.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cocoon.localnet.bench import compare
from cocoon.localnet.bench.load import run_load
from cocoon.localnet.bench.tiers import CocoonChain

BURST = 128
EVENTS = 500
MIB = 1 << 20
# Python keeps freed small objects in its arenas; what a burst leaves there must stay bounded.
RSS_TOLERANCE = 16 * MIB
SECOND_BURST_TOLERANCE = 8 * MIB


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * 4096


async def _burst(chain: CocoonChain) -> None:
    result = await run_load(chain.url, compare._BODY, concurrency=BURST, total=BURST, deadline_s=90)
    assert (result.requests, result.errors) == (BURST, 0)
    assert result.body_bytes > BURST * EVENTS * 128  # every answer came whole


@pytest.mark.slow
async def test_a_burst_of_long_answers_at_c128_all_answered_and_memory_returns(tmp_path: Path) -> None:
    ready = asyncio.Event()
    upstream, url, listening = compare._start_upstream(tmp_path, ready, EVENTS)
    chain = CocoonChain(tmp_path / "cocoon", url, "separate", max_active=2 * BURST, upstream_ready=ready)
    try:
        await asyncio.gather(listening, chain.start())
        await run_load(chain.url, compare._BODY, concurrency=8, total=16)  # warm: links, pools, caches
        idle = {child.name: _rss(child.pid) for child in chain.children}
        await _burst(chain)
        after = {child.name: _rss(child.pid) for child in chain.children}
        for name, rss in after.items():
            assert rss - idle[name] <= RSS_TOLERANCE, f"{name}: {idle[name] / MIB:.1f} → {rss / MIB:.1f} MiB"
        await _burst(chain)
        for child in chain.children:  # a second burst reuses what the first left: no growth per burst
            grown = _rss(child.pid) - after[child.name]
            assert grown <= SECOND_BURST_TOLERANCE, f"{child.name} grew {grown / MIB:.1f} MiB more"
    finally:
        chain.stop()
        upstream.stop()
