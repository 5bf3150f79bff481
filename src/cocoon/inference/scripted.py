"""An in-memory engine that plays a script: the test and benchmark twin of a real engine.

By default it answers like COCOON's benchmark backend: 50 chunks of 128 bytes each, then usage
(prompt 34, cached 11, completion 100, reasoning 10), but OpenAI-shaped (SSE chunks or one JSON
body). A script can add a delay per chunk, fail after k chunks, refuse at open, report any usage
(including a lie) or none, answer with an error status, or send exact raw bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cocoon.inference import _openai as oai
from cocoon.inference._protocol import JSON_HEADERS, SSE_HEADERS, Endpoint, EngineResponse
from cocoon.inference.errors import EngineBusy, EngineError, EngineUnavailable
from cocoon.oai import Usage
from cocoon.oai.capabilities import Capability

__all__ = ["REFERENCE_USAGE", "Script", "ScriptHandler", "ScriptedEngine", "ScriptedStats", "fake_upstream"]

# The usage COCOON's benchmark backend (benchmark/server.go) reports for every answer.
REFERENCE_USAGE = Usage(prompt_tokens=34, cached_tokens=11, completion_tokens=100, reasoning_tokens=10)


# A script replays bytes whatever the request asks, like an upstream that accepts every parameter;
# tests of routing by capability give a narrower set.
SCRIPTED_CAPABILITIES = frozenset(Capability)


def _unavailable() -> EngineError:
    return EngineUnavailable("scripted engine failure")


@dataclass(frozen=True, slots=True, kw_only=True)
class Script:
    """How one request is answered."""

    chunks: int = 50
    chunk_bytes: int = 128
    delay: float = 0.0  # seconds before each chunk
    fail_after: int | None = None  # raise `failure()` after this many chunks
    failure: Callable[[], BaseException] = _unavailable
    open_error: Callable[[], BaseException] | None = None  # raised by open() itself
    usage: Usage | None = REFERENCE_USAGE  # None: the answer carries no usage object
    status: int = 200  # non-2xx: `error` is sent as the JSON body
    error: dict[str, Any] | None = None
    raw: tuple[bytes, ...] | None = None  # exact body parts; overrides chunks, usage and status body
    content_type: str | None = None  # for `raw`; default from the request's `stream`

    def __post_init__(self) -> None:
        if self.chunks < 0 or self.chunk_bytes < 0:
            raise ValueError("chunks and chunk_bytes must be >= 0")
        if self.delay < 0:
            raise ValueError("delay must be >= 0")
        if self.fail_after is not None and self.fail_after < 0:
            raise ValueError("fail_after must be >= 0")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status")


ScriptHandler = Callable[[Endpoint, dict[str, Any]], Script | Awaitable[Script]]


@dataclass(slots=True)
class ScriptedStats:
    """Live counters (``ScriptedEngine.stats``); ``statistics()`` returns a copy."""

    opened: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    busy_refusals: int = 0
    active: int = 0


@dataclass(slots=True)
class _Call:
    endpoint: Endpoint
    body: dict[str, Any]
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class ScriptedEngine:
    """An :class:`~cocoon.inference.Engine` that answers from a :class:`Script` or a handler.

    ``calls`` records every request body as the engine saw it (with ``include_usage`` forced).
    ``max_active`` bounds concurrently open answers (``EngineBusy`` beyond it), like a real queue.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        handler: ScriptHandler | None = None,
        model_name: str = "scripted-model",
        max_active: int | None = None,
        capabilities: frozenset[Capability] = SCRIPTED_CAPABILITIES,
    ) -> None:
        if script is not None and handler is not None:
            raise ValueError("give a script or a handler, not both")
        self.model_name = model_name
        self.capabilities = capabilities
        self._script = script or Script()
        self._handler = handler
        self._max_active = max_active
        self._started = False
        self._closed = False
        self._healthy = True
        self.calls: list[_Call] = []
        self.stats = ScriptedStats()

    async def start(self) -> None:
        if self._closed:
            raise EngineUnavailable("the scripted engine is closed")
        self._started = True

    async def aclose(self) -> None:
        self._closed = True

    async def healthy(self) -> bool:
        return self._started and not self._closed and self._healthy

    def set_healthy(self, healthy: bool) -> None:
        self._healthy = healthy

    def statistics(self) -> ScriptedStats:
        return dataclasses.replace(self.stats)

    async def open(self, endpoint: Endpoint, body: dict[str, Any]) -> EngineResponse:
        if self._closed or not self._started:
            raise EngineUnavailable("the scripted engine is not running")
        if self._max_active is not None and self.stats.active >= self._max_active:
            self.stats.busy_refusals += 1
            raise EngineBusy(f"scripted engine busy: {self.stats.active} active")
        body = oai.force_include_usage(body)
        call = _Call(endpoint, body)
        self.calls.append(call)
        script = self._script
        if self._handler is not None:
            answer = self._handler(endpoint, body)
            script = await answer if inspect.isawaitable(answer) else answer
        if script.open_error is not None:
            self.stats.failed += 1
            raise script.open_error()
        self.stats.opened += 1
        stream = body.get("stream") is True
        if script.raw is not None:
            content_type = script.content_type or ("text/event-stream" if stream else "application/json")
            return self._response(script.status, (("content-type", content_type),), _raw(script), call)
        if not 200 <= script.status < 300:
            error = script.error or oai.error_body("scripted error", code=script.status)
            self.stats.completed += 1
            return EngineResponse.from_bytes(status=script.status, content=oai.dumps(error))
        model = str(body.get("model") or self.model_name)
        if endpoint is Endpoint.EMBEDDINGS:
            return self._response(200, JSON_HEADERS, _embeddings(body, script, model), call)
        if stream:
            return self._response(200, SSE_HEADERS, _sse(endpoint, script, model), call)
        return self._response(200, JSON_HEADERS, _json(endpoint, script, model), call)

    def _response(
        self, status: int, headers: tuple[tuple[str, str], ...], body: AsyncIterator[bytes], call: _Call
    ) -> EngineResponse:
        self.stats.active += 1
        finished = closed = False

        async def tracked() -> AsyncIterator[bytes]:
            nonlocal finished
            try:
                async for part in body:
                    if closed:  # closed from another task
                        return
                    yield part
                finished = True
            except EngineError:
                self.stats.failed += 1
                finished = True
                raise

        async def on_close() -> None:
            nonlocal closed
            closed = True
            self.stats.active -= 1
            if finished:
                self.stats.completed += 1
            else:
                self.stats.cancelled += 1
            call.closed.set()

        return EngineResponse(status=status, headers=headers, body=tracked(), on_close=on_close)


async def _pace(script: Script, sent: int) -> None:
    if script.fail_after is not None and sent >= script.fail_after:
        raise script.failure()
    if script.delay:
        await asyncio.sleep(script.delay)


async def _raw(script: Script) -> AsyncIterator[bytes]:
    for sent, part in enumerate(script.raw or ()):
        await _pace(script, sent)
        yield part


async def _sse(endpoint: Endpoint, script: Script, model: str) -> AsyncIterator[bytes]:
    id_, created = oai.new_id(endpoint), int(time.time())
    text = "0" * script.chunk_bytes
    for sent in range(script.chunks):
        await _pace(script, sent)
        yield oai.sse(oai.chunk(endpoint, id_=id_, created=created, model=model, text=text, role=sent == 0))
    if script.fail_after is not None and script.fail_after >= script.chunks:
        raise script.failure()
    yield oai.sse(oai.chunk(endpoint, id_=id_, created=created, model=model, finish_reason="stop"))
    if script.usage is not None:
        yield oai.sse(oai.usage_chunk(endpoint, id_=id_, created=created, model=model, usage=script.usage))
    yield oai.SSE_DONE


async def _json(endpoint: Endpoint, script: Script, model: str) -> AsyncIterator[bytes]:
    for sent in range(script.chunks):
        await _pace(script, sent)
    if script.fail_after is not None and script.fail_after >= script.chunks:
        raise script.failure()
    body = oai.full_response(
        endpoint,
        id_=oai.new_id(endpoint),
        created=int(time.time()),
        model=model,
        choices=[("0" * (script.chunks * script.chunk_bytes), "stop")],
        usage=script.usage or Usage(),
    )
    if script.usage is None:
        del body["usage"]
    yield oai.dumps(body)


async def _embeddings(body: dict[str, Any], script: Script, model: str) -> AsyncIterator[bytes]:
    """One 8-dimensional unit vector per input (prompt tokens from the script's usage)."""
    raw = body.get("input")
    count = len(raw) if isinstance(raw, list) and raw and not isinstance(raw[0], int) else 1
    for sent in range(script.chunks):
        await _pace(script, sent)
    vectors = [[1.0 if k == i % 8 else 0.0 for k in range(8)] for i in range(count)]
    prompt = (script.usage or Usage()).prompt_tokens
    yield oai.dumps(
        oai.embedding_response(
            vectors, model=model, prompt_tokens=prompt, base64=body.get("encoding_format") == "base64"
        )
    )


@contextlib.asynccontextmanager
async def fake_upstream(
    script: Script | None = None,
    *,
    handler: ScriptHandler | None = None,
    model_name: str = "scripted-model",
    max_active: int | None = None,
    host: str = "127.0.0.1",
) -> AsyncIterator[tuple[str, ScriptedEngine]]:
    """A fake OpenAI-compatible server on loopback for the duration of the block; yields its base
    URL and the engine behind it (whose ``calls`` and ``stats`` record what it was asked)."""
    from cocoon.inference.server import build_engine_app, running_server

    engine = ScriptedEngine(script, handler=handler, model_name=model_name, max_active=max_active)
    async with running_server(build_engine_app(engine, close_engine=True), host=host) as url:
        yield url, engine
