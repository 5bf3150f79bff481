"""The proxy never holds the plaintext of a sealed request or answer: a canary string sent in the
prompt and returned in the answer never reaches anything the proxy touched (the request it
received and forwarded, every worker message it relayed, the end it sent the client, its logs at
DEBUG, its statistics and its store), while an unsealed control request shows the same spy sees it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocoon import wire
from cocoon.client import Client, ClientConfig
from cocoon.inference import Script, ScriptedEngine
from cocoon.node.trust import TeeSettings
from cocoon.proxy.attempt import Attempt
from cocoon.proxy.relay import Relay
from tests.e2e.nodes import started_nodes

CANARY = "canary-7f3e9a1c-do-not-leak"


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


ANSWER = (
    _sse(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": CANARY}}],
        }
    ),
    _sse(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
    ),
    _sse(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
        }
    ),
    b"data: [DONE]\n\n",
)
CHAT = {
    "model": "scripted-model",
    "messages": [{"role": "user", "content": f"repeat {CANARY}"}],
    "stream": True,
}


class _Spy(logging.Handler):
    """Every byte string the proxy's relay handled, and every proxy-side log line at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[bytes] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(("cocoon.worker", "cocoon.client")):
            self.seen.append(self.format(record).encode())

    def add(self, value: object) -> None:
        self.seen.append(value if isinstance(value, bytes) else repr(value).encode())

    def holds(self, text: str) -> bool:
        return any(text.encode() in item for item in self.seen)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Spy]:
    spy = _Spy()
    handle, event, end_meta = Relay.handle, Attempt.event, Relay.end_meta

    async def spied_handle(self: Relay, client: str, stream: Any) -> None:
        request: wire.Request = stream.request
        spy.add(request.body)
        spy.add(request.meta)
        await handle(self, client, stream)

    def spied_event(self: Attempt, message: wire.Message, now: float) -> Any:
        spy.add(message.data if isinstance(message, wire.ResponseChunk) else message)
        return event(self, message, now)

    def spied_end(self: Relay, meta: Any, request_id: bytes, *relayed: Any) -> Any:
        out = end_meta(self, meta, request_id, *relayed)
        spy.add(out)
        return out

    monkeypatch.setattr(Relay, "handle", spied_handle)
    monkeypatch.setattr(Attempt, "event", spied_event)
    monkeypatch.setattr(Relay, "end_meta", spied_end)
    root = logging.getLogger("cocoon")
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(spy)
    try:
        yield spy
    finally:
        root.removeHandler(spy)
        root.setLevel(level)


def _store_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


async def test_the_proxy_never_holds_a_sealed_canary_and_an_unsealed_control_shows_the_spy_works(
    tmp_path: Path, spy: _Spy
) -> None:
    engine = ScriptedEngine(Script(raw=ANSWER))
    async with started_nodes(tmp_path, engine, test_credit_nano=10**12) as (proxy, _worker, client):
        async with httpx.AsyncClient(timeout=20) as http:
            sealed = await http.post(f"{client.base_url}/chat/completions", json=CHAT)
        assert sealed.status_code == 200 and CANARY in sealed.text  # the app got it, end to end
        assert client.receipts[-1]["sealed"] is True
        assert CANARY in json.dumps(engine.calls[0].body)  # the worker's engine got the prompt
        assert spy.seen, "the spy saw nothing: it is not hooked into the relay"
        assert not spy.holds(CANARY)
        assert CANARY not in json.dumps(proxy.statistics(), default=str)
        assert CANARY.encode() not in _store_bytes(proxy.config.home)

        # Control: the same spy, an unsealed request (a client with e2ee = "off").
        plain = Client(
            ClientConfig(
                home=tmp_path / "plain-client",
                http_port=0,
                proxies=[f"127.0.0.1:{proxy.client_port}"],
                tee=TeeSettings(sim_home=tmp_path),
                e2ee="off",
            )
        )
        await plain.start()
        try:
            await plain.wait_connected()
            async with httpx.AsyncClient(timeout=20) as http:
                control = await http.post(f"{plain.base_url}/chat/completions", json=CHAT)
        finally:
            await plain.stop()
        assert control.status_code == 200 and CANARY in control.text
        assert plain.receipts[-1]["sealed"] is False
        assert spy.holds(CANARY)
