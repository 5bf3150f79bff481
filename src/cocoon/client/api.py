"""The client's OpenAI-compatible HTTP API.

Handlers are thin: parse and validate, then hand the request to the proxy. Every check that can
fail (JSON, fields, budget, a proxy link, the proxy's admission: model, funds, a worker) runs
before the response starts, because once a stream has begun its status is already 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cocoon import net, wire
from cocoon.client.http_errors import ApiError, error_body, error_response, from_wire_code
from cocoon.client.protocol import (
    CLIENT_ONLY_FIELDS,
    ChatCompletionRequest,
    ClientOptions,
    CompletionRequest,
)
from cocoon.client.sse import SseHoldback, add_cost_to_body
from cocoon.node.receipt import client_record

if TYPE_CHECKING:
    from cocoon.client.service import Client

__all__ = ["build_app"]

MAX_BODY_BYTES = 8 * 1024 * 1024
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


def build_app(client: Client) -> FastAPI:
    app = FastAPI(title="cocoon client", version="0.1.0", docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(400, str(exc)), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}"), status_code=500)

    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Response:
        keys = client.config.api_keys
        if keys and request.url.path.startswith(("/v1/", "/cocoon/")):
            header = request.headers.get("authorization", "")
            token = header[7:] if header.lower().startswith("bearer ") else ""
            if not any(secrets.compare_digest(token, key) for key in keys):
                return JSONResponse(error_body(401, "invalid or missing API key"), status_code=401)
        response: Response = await call_next(request)
        return response

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        try:
            answer = await client.query("models")
        except net.NetError as exc:
            raise ApiError(502, f"no proxy available: {exc}") from exc
        data = [
            {
                "id": m["id"],
                "object": "model",
                "created": 0,
                "owned_by": "cocoon",
                "workers": m["workers"],
                "price_per_1m_nano": m.get("price_per_1m", {}),
                "coefficients": m.get("coefficients", []),
            }
            for m in answer.get("models", [])
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await _complete(client, request, "/v1/chat/completions", ChatCompletionRequest)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await _complete(client, request, "/v1/completions", CompletionRequest)

    @app.get("/v1/attestation")
    async def attestation(nonce: str | None = None) -> dict[str, Any]:
        nonce = nonce or secrets.token_hex(16)
        try:
            link = client.link()
            answer = await client.query("attestation", {"nonce": nonce})
        except net.NetError as exc:
            raise ApiError(502, f"no proxy available: {exc}") from exc
        verified = getattr(link.peer.attestation, "to_json", None)
        return {
            "nonce": nonce,
            "proxy": {"address": link.peer.address, "verified": verified() if callable(verified) else {}},
            "proxy_report": dict(answer),
        }

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return client.statistics()

    @app.get("/cocoon/receipts")
    async def receipts(limit: int = 20) -> dict[str, Any]:
        limit = max(1, min(limit, 1000))
        return {"receipts": list(client.receipts)[-limit:]}

    @app.get("/cocoon/balance")
    async def balance() -> dict[str, Any]:
        try:
            answer = await client.query("balance")
        except net.NetError as exc:
            raise ApiError(502, f"no proxy available: {exc}") from exc
        out: dict[str, Any] = {
            "proxy": dict(answer),
            "spent_nano": client.counters["spent_nano"],
            "budget_left_nano": client.budget_left(),
        }
        if client.config.chain is not None:
            out["chain"] = await _chain_call(client, "view")
        return out

    # The client contract's lifecycle (on-chain money; needs config.chain). Amounts in nanoTON.
    @app.post("/cocoon/top-up")
    async def top_up(request: Request) -> dict[str, Any]:
        amount = _amount(await _read_json(request), required=True)
        return {"chain": await _chain_call(client, "top_up", amount)}

    @app.post("/cocoon/withdraw")
    async def withdraw(request: Request) -> dict[str, Any]:
        amount = _amount(await _read_json(request), required=False)  # 0 = all above the stake
        return {"chain": await _chain_call(client, "withdraw", amount)}

    @app.post("/cocoon/close")
    async def close() -> dict[str, Any]:
        return {"chain": await _chain_call(client, "close")}

    return app


def _amount(body: dict[str, Any], *, required: bool) -> int:
    value = body.get("amount_nano", None if required else 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= 1 << 120:
        raise ApiError(400, "amount_nano must be a non-negative integer (nanoTON)", param="amount_nano")
    return value


async def _chain_call(client: Client, what: str, *args: int) -> dict[str, Any]:
    """Run one contract operation; tell the proxy to re-read the contract after a change."""
    from cocoon.client.errors import ClientChainError

    try:
        account = await client.contract()
        view = await getattr(account, what)(*args)
    except ClientChainError as exc:
        raise ApiError(exc.status, str(exc)) from exc
    if what != "view":
        with contextlib.suppress(net.NetError):
            await client.query("balance")
    result: dict[str, Any] = view.to_json()
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def _read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "request body too large")
    try:
        # NaN/Infinity are not JSON (RFC 8259) and could not be forwarded: refuse them here.
        body = json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ApiError(400, "request body is nested too deeply") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def _validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    return ApiError(400, f"{param}: {first['msg']}" if param else first["msg"], param=param)


async def _complete(
    client: Client,
    request: Request,
    endpoint: str,
    model_type: type[ChatCompletionRequest] | type[CompletionRequest],
) -> Response:
    body = await _read_json(request)
    try:
        options = ClientOptions.model_validate(
            {k: body.pop(k) for k in list(body) if k in CLIENT_ONLY_FIELDS}
        )
        parsed = model_type.model_validate(body)
    except ValidationError as exc:
        raise _validation_error(exc) from exc
    stream = bool(parsed.stream)
    if stream:
        # Usage must always reach the app (and the meter): ask the engine for it.
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    left = client.budget_left()
    if left is not None and left <= 0:
        raise ApiError(402, "daily budget exhausted", code="budget_exceeded")
    client.counters["requests"] += 1
    try:
        out = await client.open_stream(
            endpoint=endpoint,
            model=parsed.model,
            body=json.dumps(body, separators=(",", ":")).encode(),
            max_coefficient=min(options.max_coefficient, client.config.max_coefficient),
            max_tokens=parsed.token_limit(),
            timeout=options.timeout,
            meta={k: v for k, v in (("region", options.region), ("gpu_class", options.gpu_class)) if v},
        )
    except net.NetError as exc:
        client.counters["failed"] += 1
        raise ApiError(502, f"no proxy available: {exc}") from exc
    events = aiter(out)
    try:
        first = await _next_event(events, options.timeout)
    except BaseException:
        with contextlib.suppress(Exception):
            await out.cancel("client gave up")
        raise
    if isinstance(first, wire.StreamError):
        client.counters["failed"] += 1
        raise from_wire_code(first.code, first.message)
    assert isinstance(first, wire.ResponseHead)
    headers = {k: v for k, v in first.headers if k.lower() not in _HOP_HEADERS}
    if not stream or first.status >= 400:
        return await _collect(client, out, events, first.status, headers, options.timeout, request)
    return StreamingResponse(
        _relay_stream(client, out, events),
        status_code=first.status,
        headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        media_type="text/event-stream",
    )


async def _next_event(events: AsyncIterator[wire.Message], timeout: float) -> wire.Message:
    try:
        async with asyncio.timeout(timeout):
            return await anext(events)
    except TimeoutError as exc:
        raise ApiError(504, "timed out waiting for the answer") from exc
    except StopAsyncIteration as exc:
        raise ApiError(502, "the proxy closed the request without an answer") from exc
    except net.NetError as exc:
        raise ApiError(502, f"proxy connection lost: {exc}") from exc


async def _collect(
    client: Client,
    out: net.OutgoingStream,
    events: AsyncIterator[wire.Message],
    status: int,
    headers: dict[str, str],
    timeout: float,
    request: Request,
) -> Response:
    """A non-streamed answer: gather it, racing against the app hanging up (which cancels it)."""

    async def gather() -> tuple[bytes, wire.Message]:
        parts: list[bytes] = []
        while True:
            event = await _next_event(events, timeout)
            if isinstance(event, wire.ResponseChunk):
                parts.append(event.data)
            else:
                return b"".join(parts), event

    async def disconnected() -> None:
        while not await request.is_disconnected():  # noqa: ASYNC110 - starlette offers no event
            await asyncio.sleep(0.25)

    gather_task = asyncio.ensure_future(gather())
    watch_task = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({gather_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch_task.cancel()
    if gather_task not in done:
        gather_task.cancel()
        with contextlib.suppress(BaseException):
            await gather_task
        with contextlib.suppress(Exception):
            await out.cancel("app disconnected")
        return Response(status_code=499)
    body, final = gather_task.result()
    if isinstance(final, wire.StreamError):
        client.counters["failed"] += 1
        raise from_wire_code(final.code, final.message)
    assert isinstance(final, wire.ResponseEnd)
    cost = _cost_meta(final, hashlib.sha256(body).digest(), out)
    delivered = add_cost_to_body(body, cost)
    cost["delivered_sha256"] = hashlib.sha256(delivered).hexdigest()  # what the app gets, for receipts
    client.record_spend(int(cost.get("cost_nano", 0)), cost)
    client.counters["succeeded"] += 1
    headers["x-cocoon-cost-nano"] = str(cost.get("cost_nano", 0))
    headers["x-cocoon-adjusted-tokens"] = str(cost.get("adjusted_tokens", 0))
    return Response(delivered, status_code=status, headers=headers, media_type="application/json")


def _cost_meta(final: wire.ResponseEnd, response_sha256: bytes, out: net.OutgoingStream) -> dict[str, Any]:
    """The proxy's final word, with the receipt checked against the bytes we actually received."""
    meta = dict(final.meta)
    meta.setdefault("cost_nano", 0)
    meta["usage"] = {
        "prompt_tokens": final.usage.prompt_tokens,
        "cached_tokens": final.usage.cached_tokens,
        "completion_tokens": final.usage.completion_tokens,
        "reasoning_tokens": final.usage.reasoning_tokens,
    }
    # Checked with the keys attested on this link (proxy) and reported by the proxy (worker).
    attestation = out.peer.attestation
    meta.update(
        client_record(
            meta, proxy_attestation=attestation, request_id=out.request_id, received_sha256=response_sha256
        )
    )
    return meta


async def _relay_stream(
    client: Client, out: net.OutgoingStream, events: AsyncIterator[wire.Message]
) -> AsyncIterator[bytes]:
    holdback = SseHoldback()
    digest = hashlib.sha256()
    delivered = hashlib.sha256()  # what the app gets (the cost is added), for receipts
    finished = False
    try:
        async for event in events:
            if isinstance(event, wire.ResponseChunk):
                digest.update(event.data)
                ready = holdback.feed(event.data)
                if ready:
                    delivered.update(ready)
                    yield ready
            elif isinstance(event, wire.ResponseEnd):
                cost = _cost_meta(event, digest.digest(), out)
                tail = holdback.finish(cost)
                delivered.update(tail)
                cost["delivered_sha256"] = delivered.hexdigest()
                client.record_spend(int(cost.get("cost_nano", 0)), cost)
                client.counters["succeeded"] += 1
                finished = True
                yield tail
                return
            elif isinstance(event, wire.StreamError):
                client.counters["failed"] += 1
                finished = True
                yield holdback.finish(None).replace(b"data: [DONE]\n\n", b"")
                yield _sse_error(event.code, event.message)
                return
    except net.NetError as exc:
        client.counters["failed"] += 1
        finished = True
        yield _sse_error(wire.ErrorCode.UNAVAILABLE, f"proxy connection lost: {exc}")
    finally:
        if not finished:
            # The app hung up (or we were cancelled): tell the proxy, which tells the worker.
            with contextlib.suppress(Exception):
                await asyncio.shield(out.cancel("app disconnected"))


def _sse_error(code: int, message: str) -> bytes:
    status = from_wire_code(code, message).status
    payload = error_body(status, message)
    payload["error"]["created"] = int(time.time())
    return b"data: " + json.dumps(payload).encode() + b"\n\ndata: [DONE]\n\n"
