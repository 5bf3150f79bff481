"""``cocoon health``: what a worker is doing, for its owner."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from cocoon.cli.console import lazy_console
from cocoon.cli.options import global_options
from cocoon.cli.runner import fail

__all__ = ["command"]

console = lazy_console()

# cocoon.health.views.VIEWS and "all" (a test checks they agree): here so --help never loads Rich.
VIEW_NAMES = ["status", "sys", "svc", "logs", "tdx", "gpu", "earnings", "all"]


def fetch_health(url: str) -> dict[str, Any]:
    import httpx

    base = url.rstrip("/")
    try:
        with httpx.Client(timeout=5) as http:
            health = dict(http.get(f"{base}/health").raise_for_status().json())
            health["log_lines"] = (
                http.get(f"{base}/logs", params={"lines": 50}).raise_for_status().json()["lines"]
            )
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the worker at {url}: {exc}") from None
    except (ValueError, KeyError, TypeError):
        raise fail(f"the worker at {url} answered with something that is not its health report") from None
    return health


def command(
    ctx: typer.Context,
    view: Annotated[str, typer.Argument(help=f"One of: {', '.join(VIEW_NAMES)}")] = "status",
    url: Annotated[str, typer.Option(help="The worker's health endpoint.")] = "http://127.0.0.1:12000",
    watch: Annotated[float, typer.Option(min=0, help="Refresh every N seconds (0 = once).")] = 0.0,
) -> None:
    """A worker's health: status, sys, svc, logs, tdx, gpu, earnings or all."""
    if view not in VIEW_NAMES:
        raise typer.BadParameter(f"unknown view {view!r}; choose from {', '.join(VIEW_NAMES)}")
    report = fetch_health(url)
    from cocoon.health.views import render

    if global_options(ctx).json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    if not watch:
        console.print(render(view, report), crop=False)  # hashes stay whole: the terminal wraps them
        return
    from rich.live import Live

    with Live(render(view, report), console=console, refresh_per_second=4) as live:
        try:
            while True:
                time.sleep(watch)
                live.update(render(view, fetch_health(url)))
        except KeyboardInterrupt:
            return
