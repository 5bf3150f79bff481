"""The hot routes answer exactly as the FastAPI routes they shadow: same bodies, statuses, errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, MutableMapping
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from cocoon import wire
from cocoon.client.api import build_app
from cocoon.client.auth import Auth
from cocoon.client.config import ApiKey, ClientConfig
from cocoon.client.hot import HotRoutes
from cocoon.client.ports import ApiDeps
from cocoon.client.spending import Spending
from cocoon.node.localhttp import LocalHttpGuard

DELTA = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
END = wire.ResponseEnd(
    stream_id=1,
    usage=wire.Usage(prompt_tokens=3, cached_tokens=0, completion_tokens=2, reasoning_tokens=0),
    meta={"cost_nano": 7},
)


def _event(obj: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _answer(stream: bool) -> list[wire.Message]:
    head = wire.ResponseHead(stream_id=1, status=200, headers=(("content-type", "text/event-stream"),))
    if not stream:
        whole = {"id": "c1", "object": "chat.completion", "choices": [], "usage": USAGE}
        return [head, wire.ResponseChunk(stream_id=1, data=json.dumps(whole).encode()), END]
    chunks = [_event({**DELTA, "choices": [{"index": 0, "delta": {"content": str(i)}}]}) for i in range(3)]
    chunks.append(_event({**DELTA, "usage": USAGE}) + b"data: [DONE]\n\n")
    return [head, *(wire.ResponseChunk(stream_id=1, data=c) for c in chunks), END]


class _Stream:
    request_id = b"\x01" * 16

    def __init__(self, messages: list[wire.Message], gate: asyncio.Semaphore | None) -> None:
        self._messages = iter(messages)
        self._gate = gate
        self.cancelled: list[str] = []
        self.peer = SimpleNamespace(attestation=None)
        self.ready = False

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> wire.Message:
        message = next(self._messages, None)
        if message is None:
            raise StopAsyncIteration
        if self._gate is not None and isinstance(message, wire.ResponseChunk):
            await self._gate.acquire()  # one chunk per permit the test gives
        return message

    async def cancel(self, reason: str) -> None:
        self.cancelled.append(reason)


class _Proxy:
    def __init__(self, gate: asyncio.Semaphore | None = None) -> None:
        self.gate = gate
        self.streams: list[_Stream] = []
        self.sent: list[bytes] = []

    async def open_stream(self, **kw: Any) -> _Stream:
        self.sent.append(kw["body"])
        stream = _Stream(_answer(b'"stream":true' in kw["body"]), self.gate)
        self.streams.append(stream)
        return stream

    async def price_per_token(self) -> int:
        return 1

    def statistics(self) -> dict[str, Any]:
        return {}

    def attestation_policy(self) -> None:
        return None


def _apps(proxy: _Proxy, keys: list[ApiKey] | None = None) -> tuple[LocalHttpGuard, LocalHttpGuard]:
    """The client's app, and the same app with the hot routes taken out (FastAPI serves all)."""
    deps = ApiDeps(config=ClientConfig(), proxy=proxy, spending=Spending(), auth=Auth(keys or [], "adm"))  # type: ignore[arg-type]
    app = build_app(deps)
    assert isinstance(app.app, HotRoutes)
    return app, LocalHttpGuard(app.app.app, app.policy)


def _peerless(monkeypatch: pytest.MonkeyPatch) -> None:
    # No attested link in these tests: the receipt check sees no proxy attestation.
    monkeypatch.setattr("cocoon.client.relay.client_record", lambda meta, **kw: {"receipt_verified": False})


async def _post(
    app: Any, path: str, content: bytes, headers: Mapping[str, str]
) -> tuple[int, dict[str, str], bytes]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        reply = await http.post(path, content=content, headers=dict(headers))
        drop = ("content-length", "date", "server")
        return reply.status_code, {k: v for k, v in reply.headers.items() if k not in drop}, reply.content


_JSON = {"content-type": "application/json"}
_CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
_CASES: list[tuple[str, bytes, dict[str, str]]] = [
    ("/v1/chat/completions", json.dumps({**_CHAT, "stream": True}).encode(), _JSON),
    (
        "/v1/chat/completions",
        json.dumps({**_CHAT, "stream": True, "stream_options": {"include_usage": True}}).encode(),
        _JSON,
    ),
    ("/v1/chat/completions", json.dumps(_CHAT).encode(), _JSON),
    ("/v1/completions", json.dumps({"model": "m", "prompt": "hi", "stream": True}).encode(), _JSON),
    ("/v1/chat/completions", b"{nope", _JSON),
    ("/v1/chat/completions", b'{"model": "m", "messages": [], "x": 1e400}', _JSON),
    ("/v1/chat/completions", b'{"model": "m", "messages": [{"role": "user"}], "x": 1e400}', _JSON),
    ("/v1/chat/completions", json.dumps({**_CHAT, "max_coefficient": -1}).encode(), _JSON),
    ("/v1/chat/completions", json.dumps({**_CHAT, "timeout": 5}).encode(), _JSON),
    ("/v1/chat/completions", json.dumps(_CHAT).encode(), {"content-type": "text/plain"}),
    ("/v1/chat/completions", b"x" * (2 << 20), _JSON),
    ("/v1/completions", b"[]", _JSON),
    ("/v1/chat/completions", json.dumps(_CHAT).encode(), {**_JSON, "origin": "http://localhost:3000"}),
]


@pytest.mark.parametrize(("path", "content", "headers"), _CASES)
async def test_the_hot_path_answers_as_fastapi_does(
    monkeypatch: pytest.MonkeyPatch, path: str, content: bytes, headers: dict[str, str]
) -> None:
    _peerless(monkeypatch)
    hot_proxy, plain_proxy = _Proxy(), _Proxy()
    hot, _ = _apps(hot_proxy)
    _, plain = _apps(plain_proxy)
    assert await _post(hot, path, content, headers) == await _post(plain, path, content, headers)
    assert hot_proxy.sent == plain_proxy.sent  # the same body went to the proxy, or none did


async def test_api_keys_guard_the_hot_path(monkeypatch: pytest.MonkeyPatch) -> None:
    _peerless(monkeypatch)
    proxy = _Proxy()
    hot, _ = _apps(proxy, [ApiKey(key="sk-local")])
    body = json.dumps(_CHAT).encode()
    status, _, raw = await _post(hot, "/v1/chat/completions", body, _JSON)
    assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error"
    assert proxy.sent == []
    status, _, _ = await _post(
        hot, "/v1/chat/completions", body, {**_JSON, "authorization": "Bearer sk-local"}
    )
    assert status == 200 and len(proxy.sent) == 1


async def test_an_unexpected_error_is_an_openai_500(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(**kw: Any) -> None:
        raise RuntimeError("boom")

    proxy = _Proxy()
    monkeypatch.setattr(proxy, "open_stream", broken)
    hot, _ = _apps(proxy)
    transport = httpx.ASGITransport(app=hot, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        reply = await http.post("/v1/chat/completions", json=_CHAT)
    assert reply.status_code == 500
    assert reply.json()["error"]["code"] == "internal_error" and "boom" not in reply.text


async def test_each_event_goes_out_as_it_arrives_and_a_hang_up_cancels_upstream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _peerless(monkeypatch)
    gate = asyncio.Semaphore(0)
    proxy = _Proxy(gate)
    hot, _ = _apps(proxy)
    sent: list[dict[str, Any]] = []
    first_body = asyncio.Event()
    hung_up = asyncio.Event()
    body = json.dumps({**_CHAT, "stream": True}).encode()
    messages: AsyncIterator[dict[str, Any]]

    async def receive() -> dict[str, Any]:
        nonlocal messages
        return await anext(messages)

    async def feed() -> AsyncIterator[dict[str, Any]]:
        yield {"type": "http.request", "body": body, "more_body": False}
        await hung_up.wait()
        yield {"type": "http.disconnect"}

    messages = feed()

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))
        if message["type"] == "http.response.body":
            first_body.set()

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    serving = asyncio.ensure_future(hot(scope, receive, send))
    gate.release()
    await first_body.wait()  # the first event left before the answer was over
    assert sent[0]["type"] == "http.response.start" and sent[1]["more_body"] is True
    # The next chunk never comes; the app hangs up.
    hung_up.set()
    done, _ = await asyncio.wait({serving}, timeout=10)  # (a timeout here must not cancel it)
    assert serving in done and serving.exception() is None  # the hang-up is not an error
    assert proxy.streams[0].cancelled == ["app disconnected"]
    assert all(m["more_body"] for m in sent[1:])  # nothing pretended the answer was complete
