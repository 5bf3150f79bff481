"""A whole network whose node links are in memory (one net.MemoryHub): no sockets between proxy,
worker and client, and still every link attested, every answer billed and its receipt verified."""

from __future__ import annotations

from pathlib import Path

import httpx

from cocoon import net
from cocoon.inference import Script, ScriptedEngine
from tests.e2e.nodes import started_nodes

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


async def test_a_network_over_memory_links_answers_and_bills(tmp_path: Path) -> None:
    hub = net.MemoryHub()
    engine = ScriptedEngine(Script(chunks=3))
    async with started_nodes(tmp_path, engine, links=hub, test_credit_nano=10**12) as (
        proxy,
        _worker,
        client,
    ):
        async with httpx.AsyncClient(timeout=20) as http:
            answer = await http.post(f"{client.base_url}/chat/completions", json=CHAT)
            records = (await http.get(f"{client.base_url.removesuffix('/v1')}/cocoon/receipts")).json()[
                "receipts"
            ]
        assert answer.status_code == 200 and answer.json()["choices"]
        assert proxy.counters["succeeded"] == 1
        assert len(records) == 1 and records[0]["receipt_verified"], records
        assert proxy.trust is not None
        assert records[0]["attested"]["proxy_key"] == proxy.trust.identity.public_key.hex()
