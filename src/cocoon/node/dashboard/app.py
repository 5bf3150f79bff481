"""The dashboard's ASGI app, mounted at ``/dashboard`` on each node's local HTTP port.

``GET /`` is the page (static HTML, CSS and a self-written SVG chart script shipped in the package:
no CDN, nothing fetched elsewhere), ``GET /api/state`` what the page draws, and
``POST /api/actions/<name>`` an operator action, which needs ``Authorization: Bearer <operator
token>``. Reading is open (the port is local); the Host/Origin guard of :mod:`cocoon.node.localhttp`
sits in front of every route, and a strict Content-Security-Policy keeps the page to its own files.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cocoon.node.dashboard.model import Action, ChartSpec, MetricHistory, Snapshot
from cocoon.node.localhttp import LocalHttpGuard, LocalHttpPolicy

__all__ = ["DashboardSettings", "dashboard_app"]

_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "chart.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
_MAX_TARGET = 256


def _static_files() -> dict[str, bytes]:
    folder = resources.files("cocoon.node.dashboard").joinpath("static")
    return {name: folder.joinpath(name).read_bytes() for name in _STATIC}


class DashboardSettings:
    """What a node passes in besides its snapshot: charts, actions, token, guard policy, clock."""

    def __init__(
        self,
        *,
        role: str,
        charts: Sequence[ChartSpec],
        actions: Sequence[Action] = (),
        operator_token: str | None = None,
        policy: LocalHttpPolicy | None = None,
        history: MetricHistory | None = None,
        poll_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.role = role
        self.charts = tuple(charts)
        self.actions = {a.name: a for a in actions}
        self.operator_token = operator_token
        self.policy = policy or LocalHttpPolicy()
        self.history = history if history is not None else MetricHistory(min_interval_s=min(poll_s, 2.0))
        self.poll_s = poll_s
        self.clock = clock


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status, headers=_SECURITY_HEADERS)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


async def _target(request: Request) -> str:
    """The action's target from a JSON body ``{"target": "..."}`` (empty body: no target)."""
    raw = await request.body()
    if not raw:
        return ""
    try:
        body = json.loads(raw)
    except ValueError:
        raise ValueError("the body must be JSON") from None
    target = body.get("target", "") if isinstance(body, dict) else None
    if not isinstance(target, str) or len(target) > _MAX_TARGET:
        raise ValueError(f"target must be a string of at most {_MAX_TARGET} characters")
    return target


def _state_json(settings: DashboardSettings, snapshot: Snapshot, now: float) -> dict[str, Any]:
    settings.history.offer(now, snapshot.metrics)
    return {
        "role": settings.role,
        "title": snapshot.title,
        "time": now,
        "poll_s": settings.poll_s,
        "facts": [[label, value.to_json()] for label, value in snapshot.facts],
        "charts": [settings.history.chart_json(chart) for chart in settings.charts],
        "tables": [table.to_json() for table in snapshot.tables],
        "actions": [
            {"name": a.name, "label": a.label, "table": a.table, "confirm": a.confirm, "prompt": a.prompt}
            for a in settings.actions.values()
        ],
        "operator_actions": settings.operator_token is not None,
    }


def dashboard_app(snapshot: Callable[[], Awaitable[Snapshot]], settings: DashboardSettings) -> LocalHttpGuard:
    """The dashboard of one node, behind the Host/Origin guard (mount it at ``/dashboard``)."""
    files = _static_files()

    async def page(request: Request) -> Response:
        name = request.path_params.get("name", "index.html")
        if name not in files:
            return _error(404, f"no such file: {name}")
        return Response(files[name], media_type=_STATIC[name], headers=_SECURITY_HEADERS)

    async def state(request: Request) -> Response:
        body = _state_json(settings, await snapshot(), settings.clock())
        return JSONResponse(body, headers={**_SECURITY_HEADERS, "cache-control": "no-store"})

    async def act(request: Request) -> Response:
        action = settings.actions.get(request.path_params["name"])
        if action is None:
            return _error(404, f"no such action: {request.path_params['name']}")
        token = settings.operator_token
        if token is None:
            return _error(403, "operator actions are off on this node (no operator token)")
        given = _bearer(request)
        if not (given and secrets.compare_digest(given.encode(), token.encode())):
            return _error(401, "send Authorization: Bearer <the node's operator.token>")
        try:
            message = await action.run(await _target(request))
        except ValueError as exc:
            return _error(400, str(exc))
        return JSONResponse({"ok": True, "message": message}, headers=_SECURITY_HEADERS)

    app = Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/api/state", state, methods=["GET"]),
            Route("/api/actions/{name}", act, methods=["POST"]),
            Route("/{name}", page, methods=["GET"]),
        ]
    )
    return LocalHttpGuard(app, settings.policy)
