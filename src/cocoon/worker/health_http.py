"""The GPU owner's local view of a worker: ``GET /health`` (JSON) and ``GET /logs``.

Bound to loopback by default; ``cocoon health`` renders it.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from cocoon.worker.system import system_info

if TYPE_CHECKING:
    from cocoon.worker.service import Worker

__all__ = ["LogRing", "build_health_app"]


class LogRing(logging.Handler):
    """Keeps the last lines logged under ``cocoon`` for the owner's view."""

    def __init__(self, size: int = 200) -> None:
        super().__init__(level=logging.INFO)
        self.lines: deque[str] = deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a log line must never break serving
            self.handleError(record)


def build_health_app(worker: Worker, logs: LogRing) -> FastAPI:
    app = FastAPI(title="cocoon worker", docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        stats = worker.statistics()
        stats["engine_healthy"] = await worker.engine.healthy()
        stats["system"] = system_info()
        return stats

    @app.get("/logs")
    async def recent_logs(lines: int = 50) -> dict[str, Any]:
        lines = max(1, min(lines, 200))
        return {"lines": list(logs.lines)[-lines:]}

    return app
