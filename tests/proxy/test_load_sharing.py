"""Identical workers behind one proxy share the traffic (issue: a second identical worker served 0 of
the first 57 requests, and a burst went to one worker)."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from pathlib import Path

from cocoon import net, wire
from cocoon.inference import Script, ScriptedEngine
from tests.proxy.netkit import MODEL, Net, network


async def _ask(n: Net) -> str:
    out = await n.link.open_stream(
        endpoint="/v1/chat/completions",
        model=MODEL,
        body=b'{"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}',
        max_coefficient=1000,
        max_tokens=100,
        timeout=30,
        request_id=secrets.token_bytes(32),
        meta={},
    )
    events: list[net.ResponseEvent] = [event async for event in out]
    end = events[-1]
    assert isinstance(end, wire.ResponseEnd), end
    return str(end.meta["worker_id"])


async def test_identical_workers_share_sequential_and_burst_traffic(tmp_path: Path) -> None:
    engines = [ScriptedEngine(Script(chunks=2, delay=0.005)) for _ in range(3)]
    async with network(tmp_path, engines) as n:
        for _ in range(6):  # warm-up: every worker measured
            await _ask(n)
        sequential = Counter([await _ask(n) for _ in range(30)])
        assert len(sequential) == 3 and all(8 <= c <= 12 for c in sequential.values()), sequential
        burst = Counter(await asyncio.gather(*(_ask(n) for _ in range(6))))
        assert sorted(burst.values()) == [2, 2, 2], burst
