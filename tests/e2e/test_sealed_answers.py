"""Sealed requests and answers through a whole network (proxy, worker, client over RA-TLS, sim TEE):
the client seals for the worker it verified itself, the proxy routes, meters and bills without
the plaintext, and the app gets the answer with receipts and /v1/attestation saying it was sealed."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx

from cocoon.client.sealing import VerifiedWorker
from cocoon.e2ee import SealKeyPair
from cocoon.inference import Script, ScriptedEngine
from cocoon.node.receipt import verify_record
from tests.e2e.nodes import started_nodes

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


async def _receipts(http: httpx.AsyncClient, base_url: str) -> list[dict[str, object]]:
    records = (await http.get(f"{base_url.removesuffix('/v1')}/cocoon/receipts")).json()["receipts"]
    assert isinstance(records, list)
    return records


async def test_answers_are_sealed_by_default_and_the_receipts_say_so(tmp_path: Path) -> None:
    engine = ScriptedEngine(Script(chunks=3))
    async with started_nodes(tmp_path, engine, test_credit_nano=10**12) as (proxy, worker, client):
        async with httpx.AsyncClient(timeout=20) as http:
            plain = await http.post(f"{client.base_url}/chat/completions", json=CHAT)
            streamed = await http.post(f"{client.base_url}/chat/completions", json={**CHAT, "stream": True})
            records = await _receipts(http, client.base_url)
            report = (await http.get(f"{client.base_url}/attestation")).json()
        assert plain.status_code == streamed.status_code == 200, plain.text
        assert json.loads(plain.content)["choices"][0]["message"]["content"]
        assert b"data: [DONE]" in streamed.content
        assert len(records) == 2
        for record, raw in zip(records, (plain.content, streamed.content), strict=True):
            assert record["sealed"] is True and record["receipt_verified"] is True
            e2ee = record["e2ee"]
            assert isinstance(e2ee, dict) and e2ee["complete"] and e2ee["usage_matches_receipt"]
            assert e2ee["completion_id"] and str(e2ee["completion_id"]).encode() in raw
            verified = verify_record(record, response_bytes=raw)
            assert verified.sealed  # the worker signed that it sealed the answer
        # The engine saw the app's own body (opened inside the worker), not the envelope.
        assert engine.calls[0].body["messages"] == CHAT["messages"]
        assert report["e2ee"]["mode"] == "auto"
        assert report["e2ee"]["answers"]["sealed"] == 2
        keys = report["e2ee"]["workers"]["scripted-model"]
        assert worker.seal_keys is not None
        assert [k["key_id"] for k in keys] == [worker.seal_keys.current.key_id.hex()]
        assert proxy.counters["succeeded"] == 2


async def test_keys_no_worker_holds_any_more_are_fetched_again_and_the_request_still_goes_sealed(
    tmp_path: Path,
) -> None:
    async with started_nodes(tmp_path, ScriptedEngine(Script(chunks=2)), test_credit_nano=10**12) as (
        proxy,
        _worker,
        client,
    ):
        assert client.sealing is not None
        wid = proxy.registry.records()[0].worker_id
        gone = SealKeyPair.generate()  # a key the worker rotated away long ago, still in the cache
        stale = VerifiedWorker(wid, gone.recipient(wid), expires_at=2**40, image_hash="")
        client.sealing.cache._by_model["scripted-model"] = (float(2**40), [stale])
        async with httpx.AsyncClient(timeout=20) as http:
            answer = await http.post(f"{client.base_url}/chat/completions", json=CHAT)
        assert answer.status_code == 200, answer.text
        assert client.receipts[-1]["sealed"] is True
        (fresh,) = client.sealing.cache.cached()["scripted-model"]
        assert fresh.key.key_id != gone.key_id  # asked for again after the proxy's refusal
        assert proxy.counters["rejected"] == 1 and proxy.counters["succeeded"] == 1


async def test_required_sealing_refuses_rather_than_send_a_prompt_plain(tmp_path: Path) -> None:
    async with started_nodes(tmp_path, ScriptedEngine(Script(chunks=2)), test_credit_nano=10**12) as (
        proxy,
        _worker,
        client,
    ):
        assert client.sealing is not None
        client.sealing.mode = "required"

        async def no_keys(method: str, params: object) -> dict[str, object]:
            return {"workers": []}  # a proxy that hides every worker's keys

        client.sealing.cache.query = no_keys  # type: ignore[assignment]
        async with httpx.AsyncClient(timeout=20) as http:
            refused = await http.post(f"{client.base_url}/chat/completions", json=CHAT)
            client.sealing.mode = "auto"  # the allowed fallback: plain, and visibly so
            plain = await http.post(f"{client.base_url}/chat/completions", json=CHAT)
            report = (await http.get(f"{client.base_url}/attestation")).json()
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_unavailable"
        assert proxy.counters["requests"] == 1  # the refused prompt never left the client
        assert plain.status_code == 200 and client.receipts[-1]["sealed"] is False
        assert report["e2ee"]["answers"]["plain"] == 1


async def test_a_renewed_certificate_brings_new_keys_to_clients_and_the_old_key_still_opens(
    tmp_path: Path,
) -> None:
    async with started_nodes(tmp_path, ScriptedEngine(Script(chunks=2)), test_credit_nano=10**12) as (
        proxy,
        worker,
        client,
    ):
        assert worker.trust is not None and worker.seal_keys is not None and client.sealing is not None
        async with httpx.AsyncClient(timeout=20) as http:
            assert (await http.post(f"{client.base_url}/chat/completions", json=CHAT)).status_code == 200
            old = worker.seal_keys.current.key_id
            # The worker renews its certificate (new sealing keys in it) and hands it to the proxy.
            trust = worker.trust
            trust._install(trust._renewed(int(time.time()), trust._claims_now()))  # as keep_fresh does
            new = worker.seal_keys.current.key_id
            assert new != old
            wid = proxy.registry.records()[0].worker_id
            async with asyncio.timeout(10):
                while new not in proxy.relay.sealed_keys.key_ids(wid):  # noqa: ASYNC110 - no event for it
                    await asyncio.sleep(0.02)
            # A client that still holds the old key is served (the old key opens until its certificate
            # expires) ...
            stale = await http.post(f"{client.base_url}/chat/completions", json=CHAT)
            assert stale.status_code == 200 and client.receipts[-1]["sealed"] is True
            # ... and once its keys are due again it gets the renewed certificate's key.
            client.sealing.forget("scripted-model")
            assert (await http.post(f"{client.base_url}/chat/completions", json=CHAT)).status_code == 200
        (fresh,) = client.sealing.cache.cached()["scripted-model"]
        assert fresh.key.key_id == new and client.receipts[-1]["sealed"] is True
