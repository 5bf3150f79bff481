"""``cocoon proxy``: run a proxy node, or show a running proxy's operator view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

__all__ = ["app"]

app = typer.Typer(help="Run a proxy node (--config FILE), or show a running one's status.")
console = Console()
NANO = 10**9


@app.callback(invoke_without_command=True)
def run_proxy(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML config ([proxy] section).")
    ] = None,
) -> None:
    """With no subcommand: run a proxy node."""
    if ctx.invoked_subcommand is not None:
        return
    from cocoon.cli.runner import run_async, serve_node
    from cocoon.core.settings import load_config
    from cocoon.proxy import Proxy, ProxyConfig

    run_async(serve_node(Proxy(load_config(ProxyConfig, config, section="proxy")), "proxy"))


@app.command()
def status(
    url: Annotated[str, typer.Option(help="The proxy's stats address.")] = "http://127.0.0.1:11000",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Workers, load, latency, revenue (from GET /stats)."""
    try:
        with httpx.Client(timeout=10) as http:
            stats: dict[str, Any] = http.get(url.rstrip("/") + "/stats").raise_for_status().json()
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach the proxy at {url}:[/] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    summary = Table(title="proxy", show_header=False)
    summary.add_row("state", str(stats.get("state")))
    summary.add_row("clients connected", str(stats.get("clients_connected")))
    for key, value in stats.get("requests", {}).items():
        summary.add_row(f"requests {key}", str(value))
    billing = stats.get("billing", {})
    for key in ("revenue_nano", "worker_earnings_nano", "proxy_fees_nano", "reserved_nano"):
        if key in billing:
            summary.add_row(
                key.removesuffix("_nano").replace("_", " ") + " (TON)", f"{billing[key] / NANO:.9f}"
            )
    workers = stats.get("workers", {})
    summary.add_row("workers", f"{workers.get('count', 0)} ({workers.get('suspended', 0)} suspended)")
    summary.add_row("running / capacity", f"{workers.get('running', 0)} / {workers.get('capacity', 0)}")
    ttft = workers.get("latency", {}).get("ttft_s", {})
    if ttft:
        summary.add_row(
            "TTFT p50 / p99", " / ".join(f"{ttft.get(q, 0) * 1000:.1f} ms" for q in ("p50", "p99"))
        )
    console.print(summary)
    models = Table(title="models")
    for column in ("model", "workers", "coefficients", "completion price / 1M tokens (TON)"):
        models.add_column(column)
    for model in stats.get("models", []):
        models.add_row(
            model["id"],
            str(model["workers"]),
            ", ".join(str(c) for c in model["coefficients"]),
            f"{model['price_per_1m']['completion'] / NANO:.6f}",
        )
    console.print(models)
