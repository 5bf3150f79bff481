"""The OpenAI routes: models, chat and legacy completions, embeddings, the Responses API.

Handlers are thin: read and validate the body, strip the Cocoon-only fields, then hand the request
to :func:`cocoon.client.relay.forward` with the shaper that turns the worker's answer into what
the app asked for.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from cocoon import net
from cocoon.client.auth import key_scope_of
from cocoon.client.bodies import read_json
from cocoon.client.ports import ApiDeps
from cocoon.client.protocol import CLIENT_ONLY_FIELDS, ClientOptions
from cocoon.client.relay import Caller, Outbound, forward
from cocoon.client.shaping import ChatShaper, ResponsesShaper
from cocoon.oai import ApiError, ErrorKind
from cocoon.oai.requests import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    GenerationRequest,
)
from cocoon.oai.responses import responses_to_chat

__all__ = ["GENERATION_ROUTES", "GenerationModel", "caller_of", "openai_router", "prepare"]

GenerationModel = type[ChatCompletionRequest] | type[CompletionRequest] | type[EmbeddingRequest]

# The POST routes that generate, by path: the hot routes (cocoon.client.hot) serve them too.
GENERATION_ROUTES: dict[str, GenerationModel] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
}


def _validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    return ApiError(
        ErrorKind.INVALID_REQUEST, f"{param}: {first['msg']}" if param else first["msg"], param=param
    )


_NO_OPTIONS = ClientOptions()  # frozen: shared by every request that sets none


def _split_options(body: dict[str, Any]) -> ClientOptions:
    given = {k: body.pop(k) for k in CLIENT_ONLY_FIELDS.intersection(body)}
    if not given:
        return _NO_OPTIONS
    try:
        return ClientOptions.model_validate(given)
    except ValidationError as exc:
        raise _validation_error(exc) from exc


def _outbound(
    deps: ApiDeps, endpoint: str, parsed: GenerationRequest, body: dict[str, Any], options: ClientOptions
) -> Outbound:
    if parsed.stream:
        # Usage must always reach the meter: ask the engine for it (the shaper hides it if unasked).
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    try:
        # A number too large for a double (1e400) parses as infinity: not JSON, never forwarded.
        raw = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:
        raise ApiError(ErrorKind.INVALID_REQUEST, f"request body is not valid JSON: {exc}") from exc
    return Outbound(
        endpoint=endpoint,
        model=parsed.model,
        body=raw,
        stream=bool(parsed.stream),
        max_tokens=parsed.token_limit(),
        max_coefficient=min(options.max_coefficient, deps.config.max_coefficient),
        timeout=options.timeout,
        meta=options.route_meta(),
    )


def prepare(
    deps: ApiDeps, endpoint: str, model_type: GenerationModel, body: dict[str, Any]
) -> tuple[Outbound, ChatShaper]:
    """A chat, completion or embedding body, checked and ready for the proxy, with its shaper."""
    options = _split_options(body)
    try:
        parsed: GenerationRequest = model_type.model_validate(body)
    except ValidationError as exc:
        raise _validation_error(exc) from exc
    out = _outbound(deps, endpoint, parsed, body, options)
    return out, ChatShaper(wants_usage=parsed.wants_usage)


def caller_of(request: Request) -> Caller:
    return Caller(request.receive, key_scope_of(request))


async def _generate(deps: ApiDeps, request: Request, endpoint: str, model_type: GenerationModel) -> Response:
    body = await read_json(request, deps.config.max_body_bytes)
    out, shaper = prepare(deps, endpoint, model_type, body)
    return await forward(deps, caller_of(request), out, shaper)


async def _respond(deps: ApiDeps, request: Request) -> Response:
    body = await read_json(request, deps.config.max_body_bytes)
    options = _split_options(body)
    chat, ctx = responses_to_chat(
        body, response_id="resp_" + secrets.token_hex(24), created_at=int(time.time())
    )
    try:
        parsed = ChatCompletionRequest.model_validate(chat)
    except ValidationError as exc:
        raise _validation_error(exc) from exc
    out = _outbound(deps, "/v1/chat/completions", parsed, chat, options)
    return await forward(deps, caller_of(request), out, ResponsesShaper(ctx))


def _model_entry(m: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": m["id"],
        "object": "model",
        "created": 0,
        "owned_by": "cocoon",
        "workers": m.get("workers", 0),
        "capabilities": list(m.get("capabilities") or []),
        "price_per_1m_nano": m.get("price_per_1m", {}),
        "coefficients": m.get("coefficients", []),
        # The proxy's market view: its workers' attested hardware, the service classes (how many
        # workers each admits by measured performance) and what it measured of each worker.
        "hardware": list(m.get("hardware") or []),
        "service_classes": dict(m.get("service_classes") or {}),
        "worker_stats": list(m.get("worker_market") or []),
    }


async def _models(deps: ApiDeps) -> list[dict[str, Any]]:
    try:
        answer = await deps.proxy.query("models")
    except net.NetError as exc:
        raise ApiError(ErrorKind.PROXY_UNAVAILABLE, f"no proxy available: {exc}") from exc
    return [_model_entry(m) for m in answer.get("models", []) if isinstance(m, Mapping) and "id" in m]


def openai_router(deps: ApiDeps) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": await _models(deps)}

    @router.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        for entry in await _models(deps):
            if entry["id"] == model_id:
                return entry
        raise ApiError(ErrorKind.MODEL_NOT_FOUND, f"no worker serves model {model_id!r}", param="model")

    @router.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await _generate(deps, request, "/v1/chat/completions", ChatCompletionRequest)

    @router.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await _generate(deps, request, "/v1/completions", CompletionRequest)

    @router.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        return await _generate(deps, request, "/v1/embeddings", EmbeddingRequest)

    @router.post("/v1/responses")
    async def responses(request: Request) -> Response:
        return await _respond(deps, request)

    return router
