"""Sealed answers are metered without their plaintext: a lying worker (a real Worker whose engine
reports a false usage) streaming sealed frames is billed no more than the sealed sizes allow, its
mismatch is recorded, and max_tokens and the reservation still cap the bill."""

from __future__ import annotations

import math
import time
from pathlib import Path

import httpx
import pytest

from cocoon.inference import Script, ScriptedEngine, Usage
from cocoon.proxy.metering import DEFAULT_AUDIT_POLICY
from cocoon.proxy.sealed import FRAME_OVERHEAD
from cocoon.worker.sealing import SealedAnswer
from tests.e2e.nodes import started_nodes

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "tell me a story"}]}
LIE = Usage(prompt_tokens=12, completion_tokens=50_000)


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every sealed frame the worker sends (a spy on the project's own sealer)."""
    sizes: list[int] = []
    seal = SealedAnswer.seal

    def spy(self: SealedAnswer, chunk: bytes) -> bytes:
        frame = seal(self, chunk)
        sizes.append(len(frame))
        return frame

    monkeypatch.setattr(SealedAnswer, "seal", spy)
    return sizes


def _bound(frame_sizes: list[int]) -> int:
    """completion ≤ Σ plaintext bytes × (1 + ratio) + slack (proxy/sealed.py's stated bound)."""
    plain = sum(max(size - FRAME_OVERHEAD, 0) for size in frame_sizes)
    policy = DEFAULT_AUDIT_POLICY
    return math.ceil(plain * (1 + policy.completion_slack_ratio)) + policy.completion_slack_tokens


@pytest.mark.parametrize("stream", [True, False])
async def test_a_lying_worker_through_a_sealed_answer_is_billed_within_the_sealed_bound(
    tmp_path: Path, frames: list[int], stream: bool
) -> None:
    liar = ScriptedEngine(Script(chunks=4, chunk_bytes=8, usage=LIE))
    async with started_nodes(tmp_path, liar, test_credit_nano=10**15) as (proxy, _worker, client):
        async with httpx.AsyncClient(timeout=20) as http:
            answer = await http.post(
                f"{client.base_url}/chat/completions", json={**CHAT, "stream": stream, "max_tokens": 40_000}
            )
        assert answer.status_code == 200, answer.text
        (receipt,) = client.receipts
        assert receipt["sealed"] is True  # it really went sealed end to end
        assert proxy.ledger is not None
        (kept,) = proxy.ledger.capped_answers()  # the evidence is kept with the settlement
        billed = kept.billable.completion
        assert kept.claimed.completion == LIE.completion_tokens
        assert 0 < billed <= _bound(frames) < 40_000  # below the 50 000 claimed and the 40 000 allowed
        # Tighter: the worker image's own count of the text it sealed (4 x 8 bytes) bounds the lie.
        policy = DEFAULT_AUDIT_POLICY
        assert billed == math.ceil(32 * (1 + policy.completion_slack_ratio)) + policy.completion_slack_tokens
        assert kept.relayed_text == ""  # no plaintext to keep: the proxy never had it
        stats = proxy.registry.statistics(time.time())
        assert stats.usage_mismatches == 1  # the worker is told off, as for a plain answer
        assert proxy.counters["capped"] == 1
        (capped,) = proxy.relay.capped.recent
        assert any("completion 50000 > bound" in reason for reason in capped.reasons)


async def test_max_tokens_and_the_reservation_still_cap_a_sealed_bill(
    tmp_path: Path, frames: list[int]
) -> None:
    # Enough sealed plaintext that the size bound alone would let ~2 000 tokens through.
    liar = ScriptedEngine(Script(chunks=20, chunk_bytes=64, usage=LIE))
    async with started_nodes(tmp_path, liar, test_credit_nano=10**15) as (proxy, _worker, client):
        async with httpx.AsyncClient(timeout=20) as http:
            answer = await http.post(
                f"{client.base_url}/chat/completions", json={**CHAT, "stream": True, "max_tokens": 100}
            )
        assert answer.status_code == 200
        assert _bound(frames) > 100
        assert proxy.ledger is not None
        (kept,) = proxy.ledger.capped_answers()
        assert kept.billable.completion == 100
        record = proxy.ledger.request(kept.request_id)
        assert record is not None and record.charge.client_cost_nano <= record.reserved_nano
