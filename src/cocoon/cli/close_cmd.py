"""``cocoon proxy close``: one step of closing the proxy contract, run with the proxy stopped."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from cocoon.cli.console import lazy_console
from cocoon.cli.options import global_options

__all__ = ["proxy_close"]

console = lazy_console(soft_wrap=True)


def proxy_close(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML config ([proxy] section).")
    ] = None,
) -> None:
    """Close the proxy contract: close request, refunds and last payouts; run again after the delay."""
    from cocoon.cli.runner import cli_errors, run_async
    from cocoon.core.settings import load_config
    from cocoon.proxy import ProxyConfig
    from cocoon.proxy.closing import close_proxy

    options = global_options(ctx)
    with cli_errors():
        node = load_config(ProxyConfig, config, section="proxy", overrides={"home": options.home})
    report = run_async(close_proxy(node))
    if options.json:
        typer.echo(json.dumps(dataclasses.asdict(report)))
        return
    console.print(
        f"clients refunded: {len(report.clients_refunded)}, workers paid: {len(report.workers_paid)}"
    )
    if report.clients_waiting:
        console.print(f"[yellow]clients with requests in flight[/]: {', '.join(report.clients_waiting)}")
    if report.closed:
        console.print("[green]the proxy contract is closed[/]: its fees and stake went to the proxy wallet")
    else:
        console.print(f"closing: run again from chain time {report.unlock_at} to complete the close")
