"""How fast a lying or substituted worker is detected: requests until it is suspended.

* A usage liar (its signed claim exceeds what the relayed answer can hold) is suspended by its first
  lie: measured on a network of real Workers.
* A substituted-model worker (other weights under the same model hash) is caught by spot checks at
  the default rate (a round after about every 50 requests of the model, three workers asked the same
  canary): measured over many runs of the real selection policy and spot checker, the worker's answers
  played by the trust kit's greedy 'models' (the network tests show the same catch end to end).

Run with ``-s`` to see the figures the README quotes.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import statistics
from pathlib import Path

from cocoon.inference import Usage
from cocoon.proxy.config import IntegritySettings
from cocoon.proxy.reputation import ReputationBook, TrackedRegistry
from cocoon.proxy.selection import WorkerRecord
from cocoon.proxy.spotcheck import Answer, SpotChecker, SpotCheckSettings
from tests.proxy.netkit import MODEL, network
from tests.proxy.trustkit import greedy_text, model_engine

HASH = "cd" * 32


class _SimulatedChecker(SpotChecker):
    """The real checker; each worker's answer comes from its 'weights' instead of a link."""

    weights: dict[str, str]

    async def _ask(self, record: WorkerRecord, body: bytes) -> Answer | None:  # type: ignore[override]
        prompt = json.loads(body)["messages"][0]["content"]
        text = greedy_text(prompt, weights=self.weights[record.worker_id])
        digest = hashlib.sha256(text.encode()).hexdigest()
        return Answer(record.worker_id, digest, text, None, digest)


async def _requests_until_caught(
    weights: dict[str, str], seed: int, limit: int = 5000, trusted: frozenset[str] = frozenset()
) -> tuple[int, int] | None:
    """(requests of the model served, of them by the substitute) until it is suspended; None: never."""
    now = 1_000_000.0
    registry = TrackedRegistry(ReputationBook(), clock=lambda: now)
    for worker_id in weights:
        registry.add(
            WorkerRecord(worker_id, "m", 1000, 8, model_hash=HASH, attested_at=now, connected_at=now)
        )

    async def failed(_failure: object) -> None:
        return None

    checker = _SimulatedChecker(
        registry=registry,
        links=lambda _w: None,
        book=registry.book,
        on_failure=failed,  # type: ignore[arg-type]
        settings=SpotCheckSettings(trusted_workers=trusted),  # otherwise the defaults
        rng=random.Random(seed),
        clock=lambda: now,
    )
    checker.weights = weights
    checker.due(now)  # starts the count
    by_liar = 0
    for served in range(1, limit + 1):
        now += 0.5
        chosen = registry.choose("m", max_coefficient=4000, now=now)
        registry.started(chosen.worker_id, now)
        registry.finished(chosen.worker_id, ok=True, tokens=10, duration=0.2, now=now + 0.2)
        by_liar += weights[chosen.worker_id] == "small"
        for model_hash in checker.due(now):
            await checker.check(model_hash)
        if any(registry.is_suspended(w, now) for w, kind in weights.items() if kind == "small"):
            return served, by_liar
    return None


async def test_a_substituted_model_is_suspended_after_about_fifty_requests_at_the_default_rate() -> None:
    trio = {"honest-1": "big", "honest-2": "big", "substitute": "small"}
    caught = [await _requests_until_caught(trio, seed) for seed in range(300)]
    assert all(c is not None for c in caught)
    served = [c[0] for c in caught if c is not None]
    by_liar = [c[1] for c in caught if c is not None]
    q = statistics.quantiles(served, n=10)
    print(
        f"\nsubstituted model among 3 workers, default rate: suspended after {statistics.mean(served):.0f}"
        f" requests of the model on average (median {statistics.median(served):.0f}, p90 {q[8]:.0f},"
        f" max {max(served)}), {statistics.mean(by_liar):.0f} of them served by the substitute"
    )
    assert 25 <= statistics.mean(served) <= 80  # one round per ~50 requests catches it the first time
    # One honest worker against one substitute is a tie the majority cannot break...
    pair = {"honest": "big", "substitute": "small"}
    assert await _requests_until_caught(pair, 1, limit=1000) is None
    # ...unless the operator names a worker it trusts (its own): then the first round decides.
    trusted = [await _requests_until_caught(pair, seed, trusted=frozenset({"honest"})) for seed in range(100)]
    assert all(c is not None for c in trusted)
    print(
        f"pair with a trusted worker: {statistics.mean(c[0] for c in trusted if c):.0f} requests on average"
    )


async def test_a_usage_liar_is_suspended_by_its_first_lie(tmp_path: Path) -> None:
    liar = model_engine("big", claim=Usage(prompt_tokens=20, completion_tokens=5000))
    async with network(
        tmp_path, [liar, model_engine("big")], integrity=IntegritySettings(spot_check_every_requests=0)
    ) as n:
        liar_id = next(r.worker_id for r in n.proxy.registry.records() if r.worker_id.startswith("owner-0/"))
        served = by_liar = 0
        while not n.proxy.registry.is_suspended(liar_id, n.proxy.integrity.spot._clock()):
            body = json.dumps(
                {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
            )
            out = await n.link.open_stream(
                endpoint="/v1/chat/completions", model=MODEL, body=body.encode(), max_coefficient=1000,
                max_tokens=50, timeout=30, request_id=secrets.token_bytes(32), meta={},
            )  # fmt: skip
            events = [e async for e in out]
            served += 1
            by_liar += events[-1].meta.get("worker_id") == liar_id  # type: ignore[union-attr]
            assert served < 50
        print(f"\nusage liar: suspended after {served} requests, {by_liar} of them served by the liar")
        assert by_liar == 1
