"""The hot routes: chat and legacy completions served by a lean ASGI path ahead of FastAPI.

FastAPI's router, middleware stack and exception wrappers cost more per request than the rest of
the client's own work. ``POST /v1/chat/completions`` and ``POST /v1/completions`` are therefore
answered here with the same steps as their FastAPI routes (API key, JSON body bounded while read,
the same validation through :func:`~cocoon.client.routes_openai.prepare`, the same
:func:`~cocoon.client.relay.forward`) and the same OpenAI error shape. Every other request, and
every other method on these paths, goes on to the FastAPI app unchanged.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from cocoon.client.auth import bearer_of, budget_scope
from cocoon.client.bodies import receive_json
from cocoon.client.http_errors import error_response
from cocoon.client.ports import ApiDeps
from cocoon.client.relay import Caller, forward
from cocoon.client.routes_openai import GENERATION_ROUTES, GenerationModel, prepare
from cocoon.oai import ApiError, ErrorKind

__all__ = ["HotRoutes"]


def _headers(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """Content-Type, Content-Length and Authorization (the first of each, as Starlette reads them)."""
    content_type = length = auth = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = content_type or value.decode("latin-1")
        elif name == b"content-length":
            length = length or value.decode("latin-1")
        elif name == b"authorization":
            auth = auth or value.decode("latin-1")
    return content_type, length, auth


class HotRoutes:
    """ASGI app: the generation routes served directly, everything else by ``app``."""

    def __init__(self, deps: ApiDeps, app: ASGIApp) -> None:
        self.deps = deps
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            model = GENERATION_ROUTES.get(scope["path"])
            if model is not None:
                await self._serve(scope, receive, send, model)
                return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, model: GenerationModel) -> None:
        deps = self.deps
        content_type, length, auth = _headers(scope)
        try:
            key_scope = budget_scope(deps.auth.scope_of(bearer_of(auth or ""))) if deps.auth.enabled else None
            body = await receive_json(receive, content_type, length, deps.config.max_body_bytes)
            out, shaper = prepare(deps, scope["path"], model, body)
            response = await forward(deps, Caller(receive, key_scope), out, shaper)
        except ApiError as exc:
            response = error_response(exc)
        except ClientDisconnect:
            return  # the app left before its body arrived: nobody to answer
        except Exception as exc:
            # As FastAPI's catch-all does: an OpenAI-shaped 500, then the error for the server's log.
            internal = ApiError(ErrorKind.INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
            await error_response(internal)(scope, receive, send)
            raise
        await response(scope, receive, send)
