"""Receipts through a whole network: bound to the keys attested on each link, carrying the
completion id, and checkable offline against the exact bytes the app received."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon.client import Client, ClientConfig
from cocoon.inference import Script, ScriptedEngine
from cocoon.node.receipt import ReceiptError, sign_worker_part, verify_record
from cocoon.node.trust import TeeSettings
from cocoon.proxy import Proxy, ProxyConfig
from cocoon.worker import Worker, WorkerConfig

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


async def test_receipts_name_the_attested_keys_and_match_the_app_bytes(tmp_path: Path) -> None:
    tee = TeeSettings(sim_home=tmp_path)
    proxy = Proxy(
        ProxyConfig(
            home=tmp_path / "proxy",
            worker_port=0,
            client_port=0,
            stats_port=0,
            test_credit_nano=10**12,
            tee=tee,
        )
    )
    await proxy.start()
    worker = Worker(
        WorkerConfig(
            home=tmp_path / "worker", proxies=[f"127.0.0.1:{proxy.worker_port}"], health_port=0, tee=tee
        ),
        engine=ScriptedEngine(Script(chunks=3)),
    )
    client = Client(
        ClientConfig(
            home=tmp_path / "client", http_port=0, proxies=[f"127.0.0.1:{proxy.client_port}"], tee=tee
        )
    )
    try:
        await worker.start()
        await client.start()
        async with asyncio.timeout(20):
            await worker.wait_connected()
            await client.wait_connected()
            while not proxy.registry.records():  # noqa: ASYNC110 - the proxy admits the worker on hello
                await asyncio.sleep(0.05)
        async with httpx.AsyncClient(timeout=20) as http:
            plain = await http.post(f"{client.base_url}/chat/completions", json=CHAT)
            streamed = await http.post(f"{client.base_url}/chat/completions", json={**CHAT, "stream": True})
            records = (await http.get(f"{client.base_url.removesuffix('/v1')}/cocoon/receipts")).json()[
                "receipts"
            ]
        assert plain.status_code == streamed.status_code == 200
        assert len(records) == 2 and all(r["receipt_verified"] for r in records)
        assert proxy.trust is not None and worker.trust is not None
        for record, raw in zip(records, (plain.content, streamed.content), strict=True):
            assert record["attested"] == {
                "proxy_key": proxy.trust.identity.public_key.hex(),
                "worker_key": worker.trust.identity.public_key.hex(),
            }
            verified = verify_record(record, response_bytes=raw)  # the bytes the app got, cost and all
            assert verified.completion_id and verified.completion_id.encode() in raw
        assert json.loads(plain.content)["id"] == records[0]["completion_id"]
        # A worker part re-signed by a fresh key, with the proxy's countersignature kept: refused.
        forged = copy.deepcopy(records[0])
        body = forged["receipt"]["worker"]["body"]
        forged["receipt"]["worker"] = sign_worker_part(
            ed25519.Ed25519PrivateKey.generate(),
            request_body=b"",
            response_sha256=bytes.fromhex(body["response_sha256"]),
            model=body["model"],
            usage={"completion_tokens": 0},
            issued_at=body["issued_at"],
            completion_id=body["completion_id"],
        )
        with pytest.raises(ReceiptError):
            verify_record(forged, response_bytes=plain.content)
    finally:
        await client.stop()
        await worker.stop()
        await proxy.stop()
