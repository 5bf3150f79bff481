"""The GPU owner's local view of a worker: ``GET /health`` (JSON) and ``GET /logs``.

Bound to loopback by default; ``cocoon health`` renders it. The app sees the worker only through
:class:`WorkerReport`, so this module does not import the service.
"""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import FastAPI

from cocoon.worker.logs import LogRing
from cocoon.worker.system import system_info

__all__ = ["LogRing", "WorkerReport", "build_health_app"]


class WorkerReport(Protocol):
    """What the health view reads from a worker."""

    def statistics(self) -> dict[str, Any]: ...

    async def engine_healthy(self) -> bool: ...


def build_health_app(worker: WorkerReport, logs: LogRing) -> FastAPI:
    app = FastAPI(title="cocoon worker", docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        stats = worker.statistics()
        stats["engine_healthy"] = await worker.engine_healthy()
        stats["system"] = system_info()
        return stats

    @app.get("/logs")
    async def recent_logs(lines: int = 50) -> dict[str, Any]:
        lines = max(1, min(lines, 200))
        return {"lines": list(logs.lines)[-lines:]}

    return app
