"""The client's OpenAI-compatible HTTP API: the app, its guards and its error shape.

The app is built from :class:`~cocoon.client.ports.ApiDeps` (the service passes itself in as the
proxy access), so this module never imports the service. In front of it sits the Host/Origin guard
(:mod:`cocoon.node.localhttp`); API keys, when configured, and the admin token of the money
endpoints are route dependencies. Every error is answered in OpenAI's shape from the one table in
``cocoon.oai``, unknown paths included.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cocoon.client.attestation import attestation_report
from cocoon.client.dashboard import client_dashboard
from cocoon.client.hot import HotRoutes
from cocoon.client.http_errors import error_response
from cocoon.client.ports import ApiDeps
from cocoon.client.routes_cocoon import cocoon_router, money_router
from cocoon.client.routes_openai import openai_router
from cocoon.node.localhttp import LocalHttpGuard, LocalHttpPolicy
from cocoon.oai import ApiError, ErrorKind, kind_for_status

__all__ = ["build_app"]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(ApiError(ErrorKind.INVALID_REQUEST, str(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            where = f"{request.method} {request.url.path}"
            return error_response(ApiError(ErrorKind.UNKNOWN_URL, f"Invalid URL ({where})"))
        return error_response(ApiError(kind_for_status(exc.status_code), str(exc.detail)))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return error_response(ApiError(ErrorKind.INTERNAL_ERROR, f"internal error: {type(exc).__name__}"))


def build_app(deps: ApiDeps) -> LocalHttpGuard:
    """The ASGI app of the client's local API: the Host/Origin guard, the hot generation routes
    (:mod:`cocoon.client.hot`), and FastAPI for the rest."""
    app = FastAPI(title="cocoon client", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None)
    _install_error_handlers(app)
    keyed = [Depends(deps.auth.require_api_key)] if deps.auth.enabled else []
    app.include_router(openai_router(deps), dependencies=keyed)
    app.include_router(cocoon_router(deps), dependencies=keyed)
    app.include_router(money_router(deps), dependencies=[Depends(deps.auth.require_admin)])

    @app.get("/v1/attestation", dependencies=keyed)
    async def attestation(nonce: str | None = None) -> dict[str, Any]:
        return await attestation_report(deps.proxy, nonce, sealing=deps.sealing)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return deps.proxy.statistics()

    app.mount("/dashboard", client_dashboard(deps))  # the operator dashboard (read-only)
    policy = LocalHttpPolicy.of(deps.config.allowed_hosts, deps.config.allowed_origins)
    return LocalHttpGuard(HotRoutes(deps, app), policy)
