"""The proxy operator's HTTP view: ``GET /stats`` (JSON) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cocoon.core.httpserve import HttpServer, start_http_server
from cocoon.proxy.metrics import build_registry

if TYPE_CHECKING:
    from cocoon.proxy.service import Proxy

__all__ = ["build_stats_app", "start_stats_server"]


def build_stats_app(proxy: Proxy) -> FastAPI:
    app = FastAPI(title="cocoon proxy", docs_url=None, redoc_url=None)

    @app.get("/stats")
    async def stats() -> JSONResponse:
        return JSONResponse(proxy.statistics())

    @app.get("/metrics")
    async def metrics() -> Response:
        assert proxy.ledger is not None
        ledger = proxy.ledger
        registry = build_registry(ledger.statistics, lambda: proxy.registry.statistics(time.time()))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"state": proxy.state.value}

    return app


async def start_stats_server(proxy: Proxy, host: str, port: int) -> HttpServer:
    return await start_http_server(build_stats_app(proxy), host, port)
