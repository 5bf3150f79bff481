"""``/v1/attestation`` through a whole network: the proxy and each worker answer the app's nonce
with fresh evidence signed by their attested keys (the proxy's with a fresh sim quote), and an
answer to one nonce does not pass for another."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from cocoon.inference import Script, ScriptedEngine
from cocoon.node.evidence import check_evidence
from tests.e2e.nodes import started_nodes


async def test_attestation_is_fresh_and_bound_to_the_nonce(tmp_path: Path) -> None:
    async with started_nodes(tmp_path, ScriptedEngine(Script(chunks=1))) as (_proxy, _worker, client):
        async with httpx.AsyncClient(timeout=20) as http:
            first = (await http.get(f"{client.base_url}/attestation", params={"nonce": "first"})).json()
            second = (await http.get(f"{client.base_url}/attestation", params={"nonce": "second"})).json()
        assert first["proxy"]["nonce_bound"] is True, first["proxy"]["nonce_problem"]
        (entry,) = first["proxy_report"]["workers"]
        assert entry["nonce_bound"] is True, entry["nonce_problem"]
        evidence = first["proxy_report"]["evidence"]
        assert evidence["claims"]["nonce"] == "first" and "quote" in evidence["claims"]
        assert entry["evidence"]["claims"]["role"] == "worker"
        # The first answer replayed for the second nonce is refused, for the proxy and the worker alike.
        proxy_key = first["proxy"]["verified"]["public_key"]
        worker_key = entry["attestation"]["public_key"]
        now = time.time()
        assert check_evidence(evidence, nonce="second", public_key_hex=proxy_key, now=now)[0] is False
        assert (
            check_evidence(entry["evidence"], nonce="second", public_key_hex=worker_key, now=now)[0] is False
        )
        assert second["proxy"]["nonce_bound"] is True
        assert second["proxy_report"]["evidence"]["signature"] != evidence["signature"]
