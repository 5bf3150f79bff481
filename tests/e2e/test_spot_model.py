"""Spot checks with the real model: two embedded SmolLM2 engines (separate llama.cpp instances) give
the same greedy answer to every canary, so an honest pair is never flagged; a worker that announces
the same weights (same model path, so the same model hash) but answers from another 'model' is."""

from __future__ import annotations

from pathlib import Path

from cocoon.inference import (
    EMBEDDED_MODEL_NAME,
    EmbeddedEngine,
    ScriptedEngine,
    embedded_model_path,
)
from cocoon.proxy.config import IntegritySettings
from tests.proxy.netkit import network
from tests.proxy.trustkit import model_engine


class _Substitute(ScriptedEngine):
    """Claims the bundled GGUF (its hash is the real one) but answers from a smaller 'model'."""

    model_path = embedded_model_path()


def _substitute() -> ScriptedEngine:
    template = model_engine("tiny", model_name=EMBEDDED_MODEL_NAME)
    engine = _Substitute(handler=template._handler, model_name=EMBEDDED_MODEL_NAME)  # type: ignore[arg-type]
    return engine


async def test_real_engines_agree_on_every_canary_and_a_substitute_under_their_hash_is_caught(
    tmp_path: Path,
) -> None:
    real = [EmbeddedEngine(n_ctx=512, max_queue=2) for _ in range(2)]
    substitute = _substitute()
    settings = IntegritySettings(spot_check_every_requests=0, spot_check_max_tokens=12)
    async with network(tmp_path, [*real, substitute], integrity=settings) as n:  # type: ignore[list-item]
        (model_hash,) = {r.model_hash for r in n.proxy.registry.records()}  # all three claim the same weights
        liar = next(r.worker_id for r in n.proxy.registry.records() if r.worker_id.startswith("owner-2/"))
        findings = []
        for canary in (0, 57, 311):
            findings += await n.proxy.integrity.spot.check(model_hash, canary=canary)
            if n.proxy.registry.is_suspended(liar, n.proxy.integrity.spot._clock()):
                break
        failed = {f.worker_id for f in findings if not f.passed}
        assert failed == {liar}
        honest = [f for f in findings if f.worker_id != liar]
        assert honest and all(f.passed for f in honest)
        texts = {f.answer.excerpt for f in honest}
        assert len(texts) == 1 and texts.pop().strip()  # the same real, non-empty greedy text
        (evidence,) = await n.proxy.books.misbehaviour(worker_id=liar)  # type: ignore[union-attr]
        assert evidence.kind == "spot_check_failed"
