"""Engines for the trust tests: scripted 'models' whose greedy answer is a function of the prompt, so
an honest pair agrees and a substitute (same model name, so the same model hash) does not."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cocoon.inference import Endpoint, Script, ScriptedEngine, Usage

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


def _prompt(body: dict[str, Any]) -> str:
    return " ".join(str(m.get("content", "")) for m in body.get("messages") or [])


def greedy_text(prompt: str, *, weights: str) -> str:
    """What a model with ``weights`` answers to ``prompt`` under greedy decoding (deterministic)."""
    digest = hashlib.sha256(f"{weights}\n{prompt}".encode()).digest()
    return " ".join(WORDS[b % len(WORDS)] for b in digest[:12])


def _sse(text: str, usage: Usage) -> tuple[bytes, ...]:
    def event(payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    words = text.split(" ")
    parts = [
        event(
            {
                "id": "chatcmpl-x",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": w + " "}}],
            }
        )
        for w in words
    ]
    parts.append(
        event(
            {
                "id": "chatcmpl-x",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
        )
    )
    u = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
    parts.append(event({"id": "chatcmpl-x", "object": "chat.completion.chunk", "choices": [], "usage": u}))
    parts.append(b"data: [DONE]\n\n")
    return tuple(parts)


def model_engine(
    weights: str = "smollm2-135m", *, model_name: str = "scripted-model", claim: Usage | None = None
) -> ScriptedEngine:
    """A worker engine serving ``weights`` under ``model_name`` (the model hash comes from the name);
    ``claim`` overrides the usage it reports (a lying meter)."""

    def answer(_endpoint: Endpoint, body: dict[str, Any]) -> Script:
        text = greedy_text(_prompt(body), weights=weights)
        usage = claim or Usage(prompt_tokens=20, completion_tokens=len(text.split(" ")))
        return Script(raw=_sse(text, usage))

    return ScriptedEngine(handler=answer, model_name=model_name)
