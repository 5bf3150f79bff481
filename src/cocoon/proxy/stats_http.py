"""The proxy operator's HTTP view: ``GET /stats`` (JSON), ``GET /metrics`` (Prometheus), ``GET /health``,
and the operator dashboard at ``/dashboard/`` (``/`` leads there).

Every route sits behind the Host/Origin guard of local ports (:mod:`cocoon.node.localhttp`): a page
that rebinds its own name to this address is refused; ``localhost``, IP literals and the names in
``stats_allowed_hosts`` (a Prometheus scraper's) pass.

The app reads through :class:`StatsSource`, a narrow view the proxy service satisfies; it knows nothing
else of the service.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cocoon.core.httpserve import HttpServer, start_http_server
from cocoon.node.localhttp import LocalHttpGuard, LocalHttpPolicy
from cocoon.proxy.chain_sync import ChainSync
from cocoon.proxy.config import ProxyConfig
from cocoon.proxy.dashboard import proxy_dashboard
from cocoon.proxy.ledger import LedgerStatistics
from cocoon.proxy.metrics import build_registry
from cocoon.proxy.ops_metrics import register_ops_metrics
from cocoon.proxy.relay import Relay
from cocoon.proxy.selection import RegistryStatistics, WorkerRegistry
from cocoon.proxy.worker_updates import WorkerUpdates

__all__ = ["StatsSource", "build_stats_app", "start_stats_server"]


class StatsSource(Protocol):
    draining: bool  # the dashboard's drain / resume of the whole proxy
    worker_updates: WorkerUpdates  # its disable / enable of a worker

    def statistics(self) -> dict[str, Any]: ...

    def ledger_statistics(self) -> LedgerStatistics: ...

    def registry_statistics(self) -> RegistryStatistics: ...

    def state_name(self) -> str: ...

    def request_counters(self) -> Mapping[str, int]: ...

    @property
    def registry(self) -> WorkerRegistry: ...  # the dashboard's disable / enable actions

    @property
    def config(self) -> ProxyConfig: ...  # the dashboard's operator token lives in config.home

    @property
    def chain_sync(self) -> ChainSync | None: ...  # the settlement loop's progress and errors

    @property
    def relay(self) -> Relay: ...  # requests refused before any worker, by reason


def build_stats_app(source: StatsSource) -> LocalHttpGuard:
    app = FastAPI(title="cocoon proxy", docs_url=None, redoc_url=None)
    started = time.monotonic()

    @app.get("/stats")
    async def stats() -> JSONResponse:
        return JSONResponse(source.statistics())

    @app.get("/metrics")
    async def metrics() -> Response:
        registry = build_registry(
            source.ledger_statistics, source.registry_statistics, source.request_counters
        )
        sync = source.chain_sync  # settlement progress and errors; process health
        register_ops_metrics(
            registry,
            lambda: None if sync is None else sync.stats,
            lambda: time.monotonic() - started,
            rejections=lambda: source.relay.rejections,
        )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"state": source.state_name()}

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    policy = LocalHttpPolicy.of(source.config.stats_allowed_hosts)
    app.mount("/dashboard", proxy_dashboard(source, source.config.home, policy))
    return LocalHttpGuard(app, policy)


async def start_stats_server(source: StatsSource, host: str, port: int) -> HttpServer:
    return await start_http_server(build_stats_app(source), host, port)
