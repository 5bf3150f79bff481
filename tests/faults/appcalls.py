"""What the app sees: one chat request with a hard deadline, reduced to an :class:`Outcome`.

An outcome is either a complete answer (with the cost the client reported) or a clean OpenAI-shaped
error (an HTTP error status, or an error event inside a stream that had already started). Anything else
— a hang past the deadline, a 500, a malformed body, a stream that just stops — fails the test.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx

from .procnet import MODEL

__all__ = ["Outcome", "chat"]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int
    cost_nano: int = 0  # what the app was told it paid (complete answers)
    chunks: int = 0  # content deltas received
    error: str = ""
    elapsed_s: float = 0.0


def _cost(usage: Any) -> int:
    assert isinstance(usage, dict) and isinstance(usage.get("cost"), int), usage
    return int(usage["cost"])


def _error_message(body: Any) -> str:
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    message = body["error"].get("message")
    assert isinstance(message, str) and message, body
    return message


async def _once(
    http: httpx.AsyncClient, base: str, stream: bool, extra: dict[str, Any], *, allow_500: bool
) -> Outcome:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    async with http.stream("POST", f"{base}/v1/chat/completions", json=body) as reply:
        if reply.status_code != 200:
            raw = await reply.aread()
            assert allow_500 or reply.status_code != 500, raw
            return Outcome(False, reply.status_code, error=_error_message(json.loads(raw)))
        if not stream:
            answer = json.loads(await reply.aread())
            assert answer["choices"][0]["message"]["content"], answer
            return Outcome(True, 200, cost_nano=_cost(answer.get("usage")))
        chunks, cost, done = 0, None, False
        async for line in reply.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            event = json.loads(data)
            if "error" in event:  # the stream broke after it had started: a clean error event
                return Outcome(False, 200, chunks=chunks, error=_error_message(event))
            if event.get("choices") and event["choices"][0].get("delta", {}).get("content"):
                chunks += 1
            if event.get("usage") and "cost" in event["usage"]:
                cost = _cost(event["usage"])
        assert done, "the stream ended without [DONE] or an error event"
        assert cost is not None, "a complete stream carries the usage (and cost) chunk"
        return Outcome(True, 200, cost_nano=cost, chunks=chunks)


async def chat(
    http: httpx.AsyncClient,
    base: str,
    *,
    stream: bool = False,
    deadline: float = 30.0,
    allow_500: bool = False,
    **extra: Any,
) -> Outcome:
    """One request; raises AssertionError on a hang past ``deadline``, a malformed answer or (unless
    ``allow_500``) an internal error."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(deadline):
            outcome = await _once(http, base, stream, extra, allow_500=allow_500)
    except TimeoutError:
        raise AssertionError(f"request hung for more than {deadline}s") from None
    except httpx.TransportError as exc:  # the client process itself went away
        outcome = Outcome(False, 0, error=f"transport: {exc!r}")
    return Outcome(**{**outcome.__dict__, "elapsed_s": loop.time() - started})
