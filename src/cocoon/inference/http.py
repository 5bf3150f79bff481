"""The HTTP engine: any OpenAI-compatible upstream (vLLM, SGLang, llama.cpp server, Ollama).

Bytes are relayed as the upstream sends them; a :class:`UsageMeter` reads the usage on the way
through. Streaming requests get ``stream_options.include_usage = true`` (as COCOON rewrites them) so
the usage chunk always arrives. A non-2xx answer comes back as a response with the upstream's status
and JSON error body; transport failures become :class:`EngineError` subclasses, chained ``from``
their cause by :mod:`cocoon.inference.http1`. :func:`map_httpx_errors` does the same for callers
that talk to an upstream with httpx themselves.
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from cocoon.inference._openai import force_include_usage
from cocoon.inference._protocol import JSON_HEADERS, Endpoint, EngineResponse
from cocoon.inference.errors import (
    EngineBusy,
    EngineError,
    EngineProtocolError,
    EngineTimeout,
    EngineUnavailable,
)
from cocoon.inference.http1 import Timeouts, UpstreamPool
from cocoon.oai.capabilities import HTTP_DEFAULT_CAPABILITIES, Capability

__all__ = ["DEFAULT_TIMEOUTS", "EngineTimeouts", "HttpEngine", "HttpEngineStats", "map_httpx_errors"]

MAX_ERROR_BODY = 1 << 20
# Headers worth relaying; hop-by-hop and length headers are recomputed by whoever sends next.
_RELAYED_HEADERS = frozenset({"content-type", "cache-control", "retry-after", "x-request-id"})


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineTimeouts:
    """Seconds for each phase; ``read`` is the longest gap between two body chunks, so a long
    answer is fine while a stalled one is not."""

    connect: float = 5.0
    read: float = 300.0
    write: float = 30.0
    pool: float = 10.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "write", "pool"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"timeout {name} must be a positive number of seconds")

    def to_pool(self) -> Timeouts:
        return Timeouts(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


DEFAULT_TIMEOUTS = EngineTimeouts()


@contextlib.contextmanager
def map_httpx_errors(what: str) -> Iterator[None]:
    """Translate httpx exceptions raised inside the block into :class:`EngineError` subclasses."""
    try:
        yield
    except httpx.PoolTimeout as exc:
        # Every pooled connection is in use: our own concurrency cap, not a slow upstream.
        raise EngineBusy(f"{what}: all upstream connections are busy") from exc
    except httpx.TimeoutException as exc:
        raise EngineTimeout(f"{what}: upstream timed out ({type(exc).__name__})") from exc
    except (httpx.RemoteProtocolError, httpx.DecodingError, httpx.TooManyRedirects) as exc:
        raise EngineProtocolError(f"{what}: upstream broke the protocol: {exc}") from exc
    except (httpx.NetworkError, httpx.ProxyError, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        raise EngineUnavailable(f"{what}: upstream unreachable: {exc or type(exc).__name__}") from exc
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        raise EngineUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpEngineStats:
    """A snapshot for health views."""

    state: str
    model_name: str
    requests: int
    in_flight: int  # answers being relayed now
    upstream_error_statuses: int  # non-2xx answers passed through
    unreachable: int
    timeouts: int
    busy: int  # connection pool exhausted
    protocol_errors: int


def _dump_body(payload: dict[str, Any]) -> bytes:
    """The request as JSON: orjson's (the same values, compact, UTF-8 rather than \\u escapes),
    unless it refuses the value (an integer past 64 bits) or may have written a NaN or infinity as
    ``null`` (json writes those as it always did)."""
    try:
        data = orjson.dumps(payload)
    except TypeError:
        data = b"null"
    return json.dumps(payload).encode() if b"null" in data else data


class _State(enum.Enum):
    NEW = "new"
    READY = "ready"
    CLOSED = "closed"


class HttpEngine:
    """An :class:`~cocoon.inference.Engine` in front of an OpenAI-compatible HTTP server.

    ``base_url`` is the server root (``http://127.0.0.1:8000``; a trailing ``/v1`` is accepted;
    ``https://`` verifies the server against the certifi roots). ``model_name`` is discovered from
    ``GET /v1/models`` at ``start()`` when not given. With ``rewrite_model`` the request's ``model``
    is replaced by the served name, so the network-wide model id need not match the upstream's.
    Requests go over a lean kept-alive HTTP/1.1 pool (:mod:`cocoon.inference.http1`) that hands on
    whatever body bytes one read delivered, so a fast upstream's events travel on together while a
    slow one's tokens still leave the moment they arrive. ``model_path`` names the upstream's weight
    files when they are visible here, so the worker can hash them. ``capabilities`` is what the
    upstream can do (tools, structured output, logprobs by default; embeddings and vision when its
    model can): those parameters pass through unchanged and are metered like any answer.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model_name: str | None = None,
        api_key: str | None = None,
        timeouts: EngineTimeouts = DEFAULT_TIMEOUTS,
        rewrite_model: bool = True,
        max_connections: int = 256,
        model_path: Path | str | None = None,
        capabilities: Iterable[Capability] = HTTP_DEFAULT_CAPABILITIES,
    ) -> None:
        url = base_url.rstrip("/")
        if url.endswith("/v1"):
            url = url[: -len("/v1")]
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = url
        # Where the upstream's weights are, when this machine can see them (for the model hash).
        self.model_path = Path(model_path) if model_path is not None else None
        self.model_name = model_name or ""
        # What the upstream serves; the worker refuses the rest with a 400 instead of relaying a
        # parameter the upstream might silently ignore.
        self.capabilities = frozenset(capabilities)
        self._explicit_model = model_name is not None
        self._rewrite_model = rewrite_model
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._pool = UpstreamPool(
            url, timeouts=timeouts.to_pool(), max_connections=max_connections, headers=headers
        )
        self._state = _State.NEW
        self._requests = self._in_flight = self._upstream_errors = 0
        self._unreachable = self._timed_out = self._busy = self._protocol_errors = 0

    async def start(self) -> None:
        if self._state is _State.CLOSED:
            raise EngineUnavailable("the HTTP engine is closed")
        if self._state is _State.READY:
            return
        models = await self.list_models()
        if self._explicit_model:
            if models and self.model_name not in models:
                raise EngineUnavailable(f"upstream does not serve {self.model_name!r} (it serves {models})")
        elif not models:
            raise EngineProtocolError("upstream lists no models in /v1/models")
        else:
            self.model_name = models[0]
        self._state = _State.READY

    async def list_models(self) -> list[str]:
        """The model ids the upstream lists in ``GET /v1/models``."""
        response = await self._pool.request("GET", "/v1/models")
        try:
            content = await response.read(MAX_ERROR_BODY)
        finally:
            response.release()
        if response.status != 200:
            raise EngineUnavailable(f"GET /v1/models answered {response.status}")
        try:
            data = json.loads(content)["data"]
            return [str(item["id"]) for item in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineProtocolError(f"GET /v1/models sent an unexpected body: {content[:200]!r}") from exc

    async def healthy(self) -> bool:
        if self._state is _State.CLOSED:
            return False
        try:
            models = await self.list_models()
        except EngineError:
            return False
        return not self.model_name or self.model_name in models

    async def aclose(self) -> None:
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        await self._pool.aclose()

    async def __aenter__(self) -> HttpEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def open(self, endpoint: Endpoint, body: dict[str, Any]) -> EngineResponse:
        if self._state is not _State.READY:
            raise EngineUnavailable(f"the HTTP engine is {self._state.value}, not ready")
        payload = force_include_usage(body)
        if self._rewrite_model and self.model_name:
            payload["model"] = self.model_name
        self._requests += 1
        try:
            response = await self._pool.request("POST", endpoint.value, _dump_body(payload))
        except EngineError as exc:
            self._count_error(exc)
            raise
        headers = tuple((k, v) for k, v in response.headers if k in _RELAYED_HEADERS)
        if not 200 <= response.status < 300:
            self._upstream_errors += 1
            try:
                content = await response.read(MAX_ERROR_BODY)
            except EngineError:
                content = b""  # the status says enough; a broken error body is not worth more
            finally:
                response.release()
            return EngineResponse.from_bytes(
                status=response.status, headers=headers or JSON_HEADERS, content=content
            )
        self._in_flight += 1

        async def close() -> None:
            self._in_flight -= 1
            response.release()

        return EngineResponse(
            status=response.status,
            headers=headers or JSON_HEADERS,
            body=response.chunks(),
            on_close=close,
            on_error=self._count_error,
        )

    def _count_error(self, exc: EngineError) -> None:
        if isinstance(exc, EngineTimeout):
            self._timed_out += 1
        elif isinstance(exc, EngineBusy):
            self._busy += 1
        elif isinstance(exc, EngineProtocolError):
            self._protocol_errors += 1
        else:
            self._unreachable += 1

    def statistics(self) -> HttpEngineStats:
        return HttpEngineStats(
            state=self._state.value,
            model_name=self.model_name,
            requests=self._requests,
            in_flight=self._in_flight,
            upstream_error_statuses=self._upstream_errors,
            unreachable=self._unreachable,
            timeouts=self._timed_out,
            busy=self._busy,
            protocol_errors=self._protocol_errors,
        )
