"""Serve any :class:`Engine` as an OpenAI-compatible HTTP server (FastAPI).

Routes: ``GET /v1/models`` (each model's ``capabilities``), ``GET /health``, ``POST /v1/chat/completions``,
``POST /v1/completions``, ``POST /v1/embeddings``. A request needing a capability the engine lacks
gets a 400 naming the parameter.
Every check that can fail (JSON, model name, busy engine) runs before the first byte, so it gets a
proper status with OpenAI's error shape; a failure after that is reported in-band as an SSE error
chunk followed by ``[DONE]``. A client that disconnects cancels the request in the engine, for
streamed answers (Starlette cancels the body) and non-streamed ones (the handler races the
disconnect, as vLLM's ``with_cancellation`` does).

Used to expose the embedded engine to other tools, as a fake OpenAI upstream in tests (with a
:class:`ScriptedEngine`), and by ``cocoon`` commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from cocoon.inference import _openai as oai
from cocoon.inference._protocol import Endpoint, Engine, EngineResponse, check_capabilities
from cocoon.inference.errors import EngineBusy, EngineError, EngineProtocolError, EngineUnavailable

__all__ = ["build_engine_app", "error_status", "running_server", "serve_openai"]

MAX_REQUEST_BYTES = 8 << 20
GRACEFUL_SHUTDOWN_S = 5


def error_status(exc: EngineError) -> tuple[int, str]:
    """The HTTP status and OpenAI error type for an engine error (one place decides)."""
    if isinstance(exc, EngineBusy):
        return 503, "server_busy"
    if isinstance(exc, EngineProtocolError):
        return 502, "bad_gateway"
    if isinstance(exc, EngineUnavailable):
        return 503, "service_unavailable"
    return 500, "internal_error"


def _error(
    status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None
) -> JSONResponse:
    headers = {"retry-after": "1"} if type_ == "server_busy" else None
    return JSONResponse(
        oai.error_body(message, type_=type_, param=param, code=status), status, headers=headers
    )


class _Starter:
    """Starts the engine once: from the lifespan, or on first use when the host server runs
    without lifespan events."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = asyncio.Lock()
        self._started = False

    async def __call__(self) -> None:
        if self._started:
            return
        async with self._lock:
            if not self._started:
                await self._engine.start()
                self._started = True


def build_engine_app(engine: Engine, *, close_engine: bool = False) -> FastAPI:
    """An ASGI app serving ``engine``. The engine is started by the lifespan (or by the first request
    when lifespan events are off) and, with ``close_engine``, closed on shutdown."""
    ensure_started = _Starter(engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_started()
        try:
            yield
        finally:
            if close_engine:
                await engine.aclose()

    app = FastAPI(title="cocoon engine", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/v1/models", response_model=None)
    async def models() -> dict[str, Any] | JSONResponse:
        try:
            await ensure_started()
        except EngineError as exc:
            status, type_ = error_status(exc)
            return _error(status, str(exc), type_=type_)
        card = {
            "id": engine.model_name,
            "object": "model",
            "created": 0,
            "owned_by": "cocoon",
            "capabilities": sorted(engine.capabilities),
        }
        return {"object": "list", "data": [card]}

    @app.get("/health")
    async def health() -> Response:
        ok = await engine.healthy()
        return Response(status_code=200 if ok else 503)

    @app.post(Endpoint.CHAT.value)
    async def chat(request: Request) -> Response:
        return await _serve(engine, ensure_started, Endpoint.CHAT, request)

    @app.post(Endpoint.COMPLETIONS.value)
    async def completions(request: Request) -> Response:
        return await _serve(engine, ensure_started, Endpoint.COMPLETIONS, request)

    @app.post(Endpoint.EMBEDDINGS.value)
    async def embeddings(request: Request) -> Response:
        return await _serve(engine, ensure_started, Endpoint.EMBEDDINGS, request)

    return app


async def _serve(engine: Engine, ensure_started: _Starter, endpoint: Endpoint, request: Request) -> Response:
    raw = await request.body()
    if len(raw) > MAX_REQUEST_BYTES:
        return _error(413, f"request body larger than {MAX_REQUEST_BYTES} bytes")
    try:
        body = json.loads(raw)
    except ValueError:
        return _error(400, "request body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "request body must be a JSON object")
    try:
        await ensure_started()
    except EngineError as exc:
        status, type_ = error_status(exc)
        return _error(status, str(exc), type_=type_)
    model = body.get("model")
    if model is not None and model != engine.model_name:
        return _error(404, f"The model `{model}` does not exist.", type_="NotFoundError", param="model")
    refusal = check_capabilities(engine.capabilities, endpoint, body)
    try:
        response = refusal or await _until_disconnect(request, engine.open(endpoint, body))
    except EngineError as exc:
        status, type_ = error_status(exc)
        return _error(status, str(exc), type_=type_)
    if response is None:  # the client left while we waited; the engine call was cancelled
        return Response(status_code=499)
    return StreamingResponse(
        _relay(response),
        status_code=response.status,
        headers={k: v for k, v in response.headers if k != "content-type"},
        media_type=response.header("content-type"),
    )


async def _relay(response: EngineResponse) -> AsyncIterator[bytes]:
    sse = (response.header("content-type") or "").startswith("text/event-stream")
    try:
        async for part in response:
            yield part
    except EngineError as exc:
        # The status line is gone already: tell an SSE client in-band and end the stream cleanly;
        # a JSON body cannot carry the error, so the connection is aborted instead of looking whole.
        if not sse:
            raise
        _, type_ = error_status(exc)
        yield oai.sse(oai.error_body(str(exc), type_=type_, code=500))
        yield oai.SSE_DONE
    finally:
        await response.aclose()


async def _until_disconnect(request: Request, work: Awaitable[EngineResponse]) -> EngineResponse | None:
    """Run ``work`` unless the client disconnects first; then cancel it and return None. (The body
    has been read already, so the next ASGI message can only be the disconnect.)"""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        task.cancel()  # no-op when it finished
    if task in done:
        return task.result()
    with contextlib.suppress(asyncio.CancelledError, EngineError):
        late = await task  # it may have finished while being cancelled: release what it holds
        await late.aclose()
    return None


def _config(app: FastAPI, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        ws="none",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


async def serve_openai(
    engine: Engine, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "warning"
) -> None:
    """Serve ``engine`` until cancelled; then shut down gracefully (running answers get
    ``GRACEFUL_SHUTDOWN_S`` seconds) and close the engine."""
    server = uvicorn.Server(_config(build_engine_app(engine, close_engine=True), host, port, log_level))
    task = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=GRACEFUL_SHUTDOWN_S + 2)
        raise
    finally:
        await engine.aclose()


@contextlib.asynccontextmanager
async def running_server(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"
) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn in this event loop for the duration of the block and yield its base
    URL (``port=0`` picks a free port). Startup returns only once the socket listens."""
    sock = socket.socket(
        socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )  # asyncio then sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, host, bound_port, log_level))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task  # re-raises the startup error
                raise RuntimeError("uvicorn exited during startup")
            await asyncio.sleep(0.005)
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=GRACEFUL_SHUTDOWN_S + 2)
        except TimeoutError:
            server.force_exit = True
            await task
        finally:
            sock.close()
