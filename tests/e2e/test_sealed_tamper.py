"""A proxy that tampers with a sealed answer (a real Proxy whose attempt machine alters, drops or
reorders the frames it relays, or strips the end marker) is caught by the client: the app gets a
clear OpenAI error and none of the answer past the failure point."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocoon.inference import Script, ScriptedEngine
from cocoon.proxy.attempt import Attempt, Effect, RelayChunk
from cocoon.proxy.relay import Relay
from tests.e2e.nodes import started_nodes

WORDS = ("alpha", "bravo", "charlie", "foxtrot")


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _content(word: str) -> bytes:
    return _sse(
        {
            "id": "chatcmpl-t",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": word}}],
        }
    )


ANSWER = (
    *(_content(w) for w in WORDS),
    _sse(
        {
            "id": "chatcmpl-t",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
        }
    ),
    b"data: [DONE]\n\n",
)
WHOLE = json.dumps(
    {
        "id": "chatcmpl-t",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(WORDS)}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    }
).encode()
CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "spell"}]}


def _engine() -> ScriptedEngine:
    """Streams one frame per word; a whole answer comes in four frames too."""
    quarter = len(WHOLE) // 4
    parts = tuple(WHOLE[i * quarter : (i + 1) * quarter if i < 3 else None] for i in range(4))
    return ScriptedEngine(handler=lambda _, body: Script(raw=ANSWER if body.get("stream") else parts))


def _flip(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 1])


class _Tamper:
    """Rewrites the frames the proxy relays: ``how(index, frame)`` gives what is relayed instead."""

    def __init__(self, how: Callable[[int, bytes, list[bytes]], list[bytes]]) -> None:
        self.how = how
        self.seen: list[bytes] = []

    def __call__(self, effects: list[Effect]) -> list[Effect]:
        out: list[Effect] = []
        for effect in effects:
            if not isinstance(effect, RelayChunk):
                out.append(effect)
                continue
            self.seen.append(effect.data)
            out += [RelayChunk(d) for d in self.how(len(self.seen) - 1, effect.data, self.seen)]
        return out


def _flip_third(i: int, frame: bytes, _: list[bytes]) -> list[bytes]:
    return [_flip(frame) if i == 2 else frame]


def _drop_third(i: int, frame: bytes, _: list[bytes]) -> list[bytes]:
    return [] if i == 2 else [frame]


def _swap_third_and_fourth(i: int, frame: bytes, seen: list[bytes]) -> list[bytes]:
    if i == 2:
        return []
    return [frame, seen[2]] if i == 3 else [frame]


TAMPERS = {"flipped": _flip_third, "dropped": _drop_third, "reordered": _swap_third_and_fourth}


@pytest.mark.parametrize("how", sorted(TAMPERS))
async def test_a_tampered_sealed_stream_is_refused_after_the_authentic_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    tamper = _Tamper(TAMPERS[how])
    chunk = Attempt._chunk
    monkeypatch.setattr(Attempt, "_chunk", lambda self, data, now: tamper(chunk(self, data, now)))
    nodes = started_nodes(tmp_path, _engine(), test_credit_nano=10**12)
    async with nodes as (_proxy, _worker, client), httpx.AsyncClient(timeout=20) as http:
        streamed = await http.post(f"{client.base_url}/chat/completions", json={**CHAT, "stream": True})
        tamper.seen.clear()  # the whole answer's frames count from 0 again
        whole = await http.post(f"{client.base_url}/chat/completions", json=CHAT)
    assert streamed.status_code == 200  # the stream had begun
    assert "alpha" in streamed.text and "bravo" in streamed.text  # frames before the failure
    assert "charlie" not in streamed.text and "foxtrot" not in streamed.text, streamed.text  # nothing past it
    assert "failed authentication" in streamed.text and "upstream_failed" in streamed.text
    assert whole.status_code == 502
    assert whole.json()["error"]["code"] == "upstream_failed" and "alpha" not in whole.text
    assert client.sealing is not None and client.sealing.counters["refused"] == 2
    assert not client.receipts  # a refused answer is never recorded as delivered


async def test_a_sealed_answer_whose_end_marker_the_proxy_strips_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    end_meta = Relay.end_meta

    def strip(self: Relay, meta: Any, request_id: bytes, *relayed: Any) -> Any:
        return {k: v for k, v in end_meta(self, meta, request_id, *relayed).items() if k != "e2ee"}

    monkeypatch.setattr(Relay, "end_meta", strip)
    nodes = started_nodes(tmp_path, _engine(), test_credit_nano=10**12)
    async with nodes as (_proxy, _worker, client), httpx.AsyncClient(timeout=20) as http:
        streamed = await http.post(f"{client.base_url}/chat/completions", json={**CHAT, "stream": True})
        whole = await http.post(f"{client.base_url}/chat/completions", json=CHAT)
    assert "end marker" in streamed.text and "data: [DONE]" in streamed.text
    assert whole.status_code == 502 and "end marker" in whole.json()["error"]["message"]
    assert not client.receipts
