"""Receipts through a whole network: bound to the keys attested on each link, carrying the
completion id, and checkable offline against the exact bytes the app received."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon.inference import Script, ScriptedEngine
from cocoon.node.receipt import ReceiptError, sign_worker_part, verify_record
from tests.e2e.nodes import started_nodes

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


async def test_receipts_name_the_attested_keys_and_match_the_app_bytes(tmp_path: Path) -> None:
    async with started_nodes(tmp_path, ScriptedEngine(Script(chunks=3)), test_credit_nano=10**12) as (
        proxy,
        worker,
        client,
    ):
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
