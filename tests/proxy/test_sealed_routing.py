"""The proxy's side of sealed requests, unit by unit: ``meta["e2ee"]`` is validated against the
envelope before anything is reserved, sealed frames are tallied by size only, the worker's own
count can only lower the bound, and a sealed request goes only to workers holding its keys."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocoon.client.sealing import VerifiedWorker, seal_for
from cocoon.e2ee import SealKeyPair
from cocoon.inference import EngineUnavailable, Script, ScriptedEngine
from cocoon.oai.capabilities import Capability
from cocoon.proxy.sealed import FRAME_OVERHEAD, BadSealedRequest, SealedTally, parse_sealed_meta
from tests.e2e.nodes import started_nodes
from tests.proxy.netkit import MODEL, network

BODY = json.dumps(
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [{"x": 1}]}
).encode()


def _sealed(*keys: SealKeyPair) -> tuple[bytes, dict[str, Any]]:
    workers = [VerifiedWorker(f"w{i}", k.recipient(f"w{i}"), 2**40, "") for i, k in enumerate(keys)]
    call = seal_for("/v1/chat/completions", "m", 10, BODY, {}, workers)
    return call.body, call.meta


def test_a_well_formed_sealed_meta_says_whom_it_is_for_and_what_it_needs() -> None:
    keys = (SealKeyPair.generate(), SealKeyPair.generate())
    body, meta = _sealed(*keys)
    sealed = parse_sealed_meta("/v1/chat/completions", meta, body)
    assert sealed is not None
    assert sealed.key_ids == {k.key_id for k in keys}
    assert set(sealed.needs) == {Capability.CHAT, Capability.TOOLS}  # declared outside the envelope
    assert sealed.plain_bytes == len(BODY)  # the prompt's bound, read from the envelope
    assert sealed.forward == {"v": 1, "id": meta["e2ee"]["id"]}  # all the worker gets of the meta
    assert parse_sealed_meta("/v1/chat/completions", {"region": "eu"}, BODY) is None  # plain


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"key_ids": []},
        {"key_ids": ["zz"]},
        {"key_ids": [secrets.token_hex(16)]},  # not the envelope's
        {"needs": ["teleport"]},
        {"needs": {"tools": ""}},
        {"id": ""},
        {"prompt_bytes": -1},
    ],
)
def test_a_malformed_sealed_meta_is_refused(change: dict[str, Any]) -> None:
    body, meta = _sealed(SealKeyPair.generate())
    with pytest.raises(BadSealedRequest):
        parse_sealed_meta("/v1/chat/completions", {"e2ee": {**meta["e2ee"], **change}}, body)


def test_a_body_that_is_no_envelope_is_refused() -> None:
    _, meta = _sealed(SealKeyPair.generate())
    with pytest.raises(BadSealedRequest, match="malformed"):
        parse_sealed_meta("/v1/chat/completions", meta, BODY)


def test_the_sealed_tally_counts_sizes_and_takes_the_workers_count_only_lower() -> None:
    tally = SealedTally()
    for size in (100, 60, FRAME_OVERHEAD):
        tally.feed(b"\x00" * size)
    assert (tally.frames, tally.deltas) == (3, 2)  # the last frame holds no plaintext
    assert tally.text_bytes == tally.untokenized_bytes == 100 + 60 - 2 * FRAME_OVERHEAD
    assert tally.texts() == []  # nothing to read
    content = {"text_bytes": 10**6, "deltas": 99, "tool_calls": 0, "content_frames": 2}
    assert tally.attest({"e2ee": {"content": content}}, missed=True) is False  # all content relayed
    assert tally.text_bytes == 100 + 60 - 2 * FRAME_OVERHEAD and tally.deltas == 2  # never raised
    content = {**content, "text_bytes": 5, "deltas": 1, "content_frames": 4}
    assert tally.attest({"e2ee": {"content": content}}, missed=False) is True  # content came later
    assert (tally.text_bytes, tally.deltas) == (5, 1)
    assert tally.attest({"e2ee": {"content": {"text_bytes": "x"}}}, missed=True) is True  # ignored


async def test_a_sealed_request_goes_only_to_the_worker_holding_its_key(tmp_path: Path) -> None:
    async with started_nodes(tmp_path, ScriptedEngine(Script(chunks=2)), test_credit_nano=10**12) as (
        proxy,
        worker,
        client,
    ):
        assert worker.seal_keys is not None
        wid = proxy.registry.records()[0].worker_id
        assert worker.seal_keys.current.key_id in proxy.relay.sealed_keys.key_ids(wid)
        answer = await client.query("worker_keys", {"model": "scripted-model"})
        (listed,) = answer["workers"]
        assert listed["worker_id"] == wid
        assert client.sealing is not None
        # Keys of a worker that is not here: refused before any worker, with the phrase that makes
        # the client fetch keys again.
        stranger = SealKeyPair.generate()
        body, meta = _sealed(stranger)
        stream = await client.open_stream(
            endpoint="/v1/chat/completions",
            model="scripted-model",
            body=body,
            max_coefficient=10**6,
            max_tokens=10,
            timeout=10,
            meta=meta,
        )
        first = await anext(aiter(stream))
        assert "e2ee keys" in getattr(first, "message", "")
        assert proxy.counters["succeeded"] == 0
        async with httpx.AsyncClient(timeout=20) as http:  # the client's own keys work
            ok = await http.post(
                f"{client.base_url}/chat/completions",
                json={"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]},
            )
        assert ok.status_code == 200 and client.receipts[-1]["sealed"] is True


async def test_one_sealed_envelope_is_retried_on_another_holder_and_load_is_shared(tmp_path: Path) -> None:
    down = ScriptedEngine(Script(open_error=lambda: EngineUnavailable("down")))
    up = ScriptedEngine(Script(chunks=2, delay=0.01))
    async with network(tmp_path, [down, up]) as n, httpx.AsyncClient(timeout=20) as http:
        url = f"{n.client.base_url}/chat/completions"
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(6):
            answer = await http.post(url, json=chat)
            assert answer.status_code == 200, answer.text
            assert n.client.receipts[-1]["sealed"] is True
            assert len(n.client.receipts[-1]["e2ee"]["sealed_for"]) == 2  # one envelope, both workers
            if down.stats.failed:
                break
        assert down.stats.failed >= 1 and n.proxy.counters["retried"] >= 1  # opened there, then retried


async def test_sealed_requests_are_balanced_among_the_holders(tmp_path: Path) -> None:
    engines = [ScriptedEngine(Script(chunks=3, delay=0.02)) for _ in range(2)]
    async with network(tmp_path, engines) as n, httpx.AsyncClient(timeout=20) as http:
        url = f"{n.client.base_url}/chat/completions"
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        answers = await asyncio.gather(*(http.post(url, json=chat) for _ in range(8)))
        assert all(a.status_code == 200 for a in answers)
        assert all(r["sealed"] for r in n.client.receipts)
        assert all(e.stats.completed >= 1 for e in engines)  # both workers served sealed requests
