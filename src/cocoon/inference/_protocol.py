"""The engine interface: endpoints, the response object every engine returns, and the Protocol."""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from cocoon.inference.errors import EngineError
from cocoon.inference.meter import BodyKind, UsageMeter
from cocoon.oai import ErrorKind, Usage, error_body, error_status
from cocoon.oai.capabilities import Capability, unsupported

__all__ = [
    "JSON_HEADERS",
    "SSE_HEADERS",
    "Endpoint",
    "Engine",
    "EngineResponse",
    "check_capabilities",
    "unsupported_response",
]

SSE_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
)
JSON_HEADERS: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


class Endpoint(enum.Enum):
    """The inference paths a worker accepts (COCOON accepts the first two; embeddings are ours)."""

    CHAT = "/v1/chat/completions"
    COMPLETIONS = "/v1/completions"
    EMBEDDINGS = "/v1/embeddings"

    @classmethod
    def from_path(cls, path: str) -> Endpoint:
        try:
            return cls(path)
        except ValueError:
            raise ValueError(f"unsupported inference path {path!r}") from None


class EngineResponse:
    """One answer from an engine: status and headers at once, the body as it is produced.

    Iterate it (once) for the exact body bytes to relay. While they pass, a :class:`UsageMeter`
    reads them; ``usage`` is set once the body has been read to the end (``None`` before that, for
    non-2xx answers and when the body carried no usage object). ``aclose()`` stops the generation in
    the engine; it is idempotent, is also called when iteration ends or fails, and may be called
    from another task than the reader (the reader then sees the body end early).
    """

    def __init__(
        self,
        *,
        status: int,
        headers: tuple[tuple[str, str], ...],
        body: AsyncIterator[bytes],
        on_close: Callable[[], Awaitable[None]] | None = None,
        on_error: Callable[[EngineError], None] | None = None,
        meter: UsageMeter | None = None,
    ) -> None:
        if not 100 <= status <= 599:
            raise ValueError(f"invalid HTTP status {status}")
        self.status = status
        self.headers = tuple((k.lower(), v) for k, v in headers)
        self.usage: Usage | None = None
        self._body = body
        self._on_close = on_close
        self._on_error = on_error  # told of an engine error the body raises (before it propagates)
        self._meter = meter or UsageMeter(BodyKind.from_content_type(self.header("content-type")))
        self._iterated = False
        self._closed = False

    @classmethod
    def from_bytes(
        cls, *, status: int, headers: tuple[tuple[str, str], ...] = JSON_HEADERS, content: bytes
    ) -> EngineResponse:
        """A response whose body is already known (JSON answers, error bodies)."""

        async def body() -> AsyncIterator[bytes]:
            if content:
                yield content

        return cls(status=status, headers=headers, body=body())

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def meter(self) -> UsageMeter:
        """The meter reading this body (its ``statistics()`` count events and characters)."""
        return self._meter

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._iterated:
            raise RuntimeError("an EngineResponse body can be iterated only once")
        self._iterated = True
        return self._relay()

    async def _relay(self) -> AsyncIterator[bytes]:
        try:
            meter = self._meter if self.ok else None
            metering = False  # an error the meter raises is not the engine's: on_error is not told
            try:
                async for chunk in self._body:
                    if not chunk:
                        continue
                    if meter is not None:
                        metering = True
                        meter.feed(chunk)
                        metering = False
                    yield chunk
            except EngineError as exc:
                if self._on_error is not None and not metering:
                    self._on_error(exc)
                raise
            if self.ok:
                usage = self._meter.finish()
                self.usage = usage if self._meter.usage_seen else None
        finally:
            await self.aclose()

    async def read(self) -> bytes:
        """The whole body (for JSON answers and tests)."""
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            # First tell the engine to stop: this also works while another task is inside the body.
            if self._on_close is not None:
                await self._on_close()
        finally:
            aclose = getattr(self._body, "aclose", None)
            if aclose is not None:
                # RuntimeError "asynchronous generator is already running": a reader in another task
                # owns the body and will see it end now that the engine stopped.
                with contextlib.suppress(RuntimeError):
                    await aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def unsupported_response(message: str, *, param: str | None) -> EngineResponse:
    """A 400 ``unsupported_parameter`` naming ``param`` (the answer for what an engine cannot do)."""
    body = error_body(ErrorKind.UNSUPPORTED_PARAMETER, message, param=param)
    return EngineResponse.from_bytes(
        status=error_status(ErrorKind.UNSUPPORTED_PARAMETER),
        content=json.dumps(body).encode(),
    )


def check_capabilities(
    capabilities: frozenset[Capability], endpoint: Endpoint, body: Mapping[str, Any]
) -> EngineResponse | None:
    """The 400 for a request that needs a capability the engine lacks, or ``None``."""
    lacking = unsupported(endpoint.value, body, capabilities)
    return None if lacking is None else unsupported_response(lacking.message, param=lacking.param)


@runtime_checkable
class Engine(Protocol):
    """What a worker needs from an inference backend."""

    model_name: str
    capabilities: frozenset[Capability]  # what this engine serves (contract 6)

    async def start(self) -> None:
        """Load the model or check the upstream; idempotent."""

    async def aclose(self) -> None:
        """Stop all generations and release the engine; idempotent."""

    async def healthy(self) -> bool:
        """True when the engine can serve a request now."""

    async def open(self, endpoint: Endpoint, body: dict[str, Any]) -> EngineResponse:
        """Start one request. ``body`` is the OpenAI request JSON. Streaming requests always get
        ``stream_options.include_usage = true`` so the usage chunk arrives.

        Raises ``EngineBusy`` when the queue is full and ``EngineUnavailable`` when the engine is
        down; an upstream error status comes back as a response, not an exception."""
