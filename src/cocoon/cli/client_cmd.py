"""``cocoon client ...``: the app developer's view of a running client (spend, receipts, proxies, money).

The money commands (``balance``, ``top-up``, ``withdraw``, ``close``) talk to the running client over
its local HTTP API (``/cocoon/...``); the client holds the wallet key and moves the funds on chain.
Tables show TON; ``--json`` prints the client's own JSON (amounts as integer nanoTON, ``*_nano``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cocoon.cli.client_http import DEFAULT_CLIENT_URL, AdminTokenOpt, ApiKeyOpt, ClientApi, UrlOpt
from cocoon.cli.console import escape, lazy_console, make_table
from cocoon.cli.options import HomeOpt, JsonOpt, cli_app, global_options, record
from cocoon.cli.runner import fail
from cocoon.core.amounts import format_ton, parse_ton

if TYPE_CHECKING:
    from rich.table import Table


__all__ = ["app"]

app = cli_app(
    help="Run a client node (--config FILE), or talk to a running one: status, balance, top-up, "
    "withdraw, close, receipts, verify-receipt.",
)
console = lazy_console()
AmountArg = Annotated[str, typer.Argument(help="TON, e.g. 1.5 (at most 9 decimals).")]


def _amount(text: str) -> int:
    try:
        return parse_ton(text)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _show_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def _amount_row(key: str, value: Any) -> tuple[str, str]:
    """``balance_nano: 5`` → ``("balance", "0.000000005 TON")``; other keys as they are."""
    if key.endswith("_nano") and isinstance(value, int):
        return key.removesuffix("_nano").replace("_", " "), format_ton(value)
    return key.replace("_", " "), str(value)


def _contract_table(chain: Mapping[str, Any], title: str = "client contract (on chain)") -> Table:
    table = make_table(title=title, show_header=False)
    table.add_row("contract", str(chain.get("contract")))
    table.add_row("state", str(chain.get("state")))
    for key, label in (
        ("balance_nano", "balance"),
        ("stake_nano", "stake"),
        ("charged_nano", "charged"),
        ("wallet_balance_nano", "wallet"),
    ):
        table.add_row(label, format_ton(int(chain.get(key, 0))))
    table.add_row("tokens charged", str(chain.get("tokens_used")))
    if chain.get("unlock_ts"):
        table.add_row("refund possible at", str(chain.get("unlock_ts")))
    return table


def _api(
    ctx: typer.Context, url: str, api_key: str | None = None, admin_token: str | None = None
) -> ClientApi:
    return ClientApi(url, home=global_options(ctx).home, api_key=api_key, admin_token=admin_token)


def _chain_result(ctx: typer.Context, report: dict[str, Any]) -> None:
    if global_options(ctx).json:
        _show_json(report)
    else:
        console.print(_contract_table(report.get("chain", {})))


@app.callback(invoke_without_command=True)
def run_client(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML config ([client] section).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address the OpenAI API listens on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port of the OpenAI API (0 = any free port).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """With no subcommand: run a client node (flags override the config file and COCOON_CLIENT__*)."""
    options = record(ctx, home, as_json)
    if ctx.invoked_subcommand is not None:
        return
    from cocoon.cli.runner import cli_errors, run_async, serve_node
    from cocoon.client import Client, ClientConfig
    from cocoon.core.settings import load_config
    from cocoon.core.statedir import private_dir

    overrides = {"home": options.home, "http_host": host, "http_port": port}
    with cli_errors():
        node_config = load_config(ClientConfig, config, section="client", overrides=overrides)
        private_dir(node_config.home)  # keys and ledgers: readable by the owner only
        client = Client(node_config)

    def summary() -> dict[str, str]:
        return {"OpenAI base URL": client.base_url, "home": str(client.config.home)}

    run_async(serve_node(client, "client", summary, stdout_line=lambda: client.base_url))


@app.command()
def status(ctx: typer.Context, url: UrlOpt = DEFAULT_CLIENT_URL, api_key: ApiKeyOpt = None) -> None:
    """Proxy links, requests, spend."""
    report = _api(ctx, url, api_key).get("/health")
    if global_options(ctx).json:
        _show_json(report)
        return
    table = make_table(title="client", show_header=False)
    for key in ("state", "requests", "succeeded", "failed"):
        table.add_row(key, str(report.get(key)))
    table.add_row("spent", format_ton(int(report.get("spent_nano", 0))))
    left = report.get("budget_left_nano")
    table.add_row("budget left today", "unlimited" if left is None else format_ton(int(left)))
    for proxy in report.get("proxies", []):
        table.add_row(f"proxy {proxy['address']}", "connected" if proxy["connected"] else "reconnecting")
    console.print(table)


@app.command()
def balance(ctx: typer.Context, url: UrlOpt = DEFAULT_CLIENT_URL, api_key: ApiKeyOpt = None) -> None:
    """The client contract on chain (balance, stake, charged) and what the proxy says was used."""
    report = _api(ctx, url, api_key).get("/cocoon/balance")
    if global_options(ctx).json:
        _show_json(report)
        return
    if report.get("chain"):
        console.print(_contract_table(report["chain"]))
    table = make_table(title="balance at the proxy", show_header=False)
    for key, value in sorted(report.get("proxy", {}).items()):
        table.add_row(*_amount_row(key, value))
    table.add_row("spent here", format_ton(int(report.get("spent_nano", 0))))
    console.print(table)


@app.command("top-up")
def top_up(
    ctx: typer.Context,
    amount: AmountArg,
    url: UrlOpt = DEFAULT_CLIENT_URL,
    admin_token: AdminTokenOpt = None,
) -> None:
    """Move TON from the client's wallet into its contract (opens the contract the first time)."""
    nano = _amount(amount)
    _chain_result(
        ctx, _api(ctx, url, admin_token=admin_token).post_money("/cocoon/top-up", {"amount_nano": nano})
    )


@app.command()
def withdraw(
    ctx: typer.Context,
    amount: Annotated[str, typer.Argument(help="TON to take back; 0 = everything above the stake.")] = "0",
    url: UrlOpt = DEFAULT_CLIENT_URL,
    admin_token: AdminTokenOpt = None,
) -> None:
    """Take funds above the stake back to the client's wallet."""
    nano = _amount(amount)
    api = _api(ctx, url, admin_token=admin_token)
    _chain_result(ctx, api.post_money("/cocoon/withdraw", {"amount_nano": nano}))


@app.command()
def close(ctx: typer.Context, url: UrlOpt = DEFAULT_CLIENT_URL, admin_token: AdminTokenOpt = None) -> None:
    """Close the contract: the first call starts the close delay, a call after it refunds everything."""
    _chain_result(ctx, _api(ctx, url, admin_token=admin_token).post_money("/cocoon/close", {}))


@app.command()
def receipts(
    ctx: typer.Context,
    url: UrlOpt = DEFAULT_CLIENT_URL,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    api_key: ApiKeyOpt = None,
) -> None:
    """The last answers' signed usage receipts (`--json`: a list `verify-receipt` checks as is)."""
    items = _api(ctx, url, api_key).get("/cocoon/receipts", limit=limit).get("receipts", [])
    if global_options(ctx).json:
        _show_json(items)
        return
    table = make_table(title="receipts")
    for column in ("model", "prompt", "completion", "cost", "verified", "sealed"):
        table.add_column(column)
    for item in items:
        usage = item.get("usage", {})
        worker = (item.get("receipt") or {}).get("worker", {}).get("body", {})
        cost = item.get("cost_nano")
        table.add_row(
            str(worker.get("model", "?")),
            str(usage.get("prompt_tokens")),
            str(usage.get("completion_tokens")),
            format_ton(cost) if isinstance(cost, int) else "?",
            "yes" if item.get("receipt_verified") else "no",
            "yes" if item.get("sealed") else "no",  # end to end, past the proxy
        )
    console.print(table)


@app.command("verify-receipt")
def verify_receipt_cmd(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="Receipts JSON: `cocoon client receipts --json` output, one item of it, or a bare receipt."
        ),
    ],
    response: Annotated[Path | None, typer.Option(help="The raw answer bytes to check against.")] = None,
    worker_key: Annotated[
        str | None, typer.Option(help="The attested worker key (hex); default: the one recorded.")
    ] = None,
    proxy_key: Annotated[
        str | None, typer.Option(help="The attested proxy key (hex); default: the one recorded.")
    ] = None,
) -> None:
    """Check receipts' signatures offline against the attested keys (exit 0 only if every one is valid)."""
    from cocoon.cli.receipts import check_receipts_file

    report = check_receipts_file(file, response=response, worker_key=worker_key, proxy_key=proxy_key)
    if global_options(ctx).json:
        _show_json(report)
    else:
        for index, item in enumerate(report["receipts"]):
            label = f"receipt {index}: " if len(report["receipts"]) > 1 else ""
            if item["valid"]:
                console.print(
                    f"{label}[green]valid[/]: model {escape(item['model'])}, usage {item['usage']}, cost "
                    f"{format_ton(item['cost_nano'])}, "
                    f"worker key {item['worker_key'][:16]}…",
                    soft_wrap=True,
                )
            else:
                console.print(f"{label}[red]invalid[/]: {escape(item['error'])}", soft_wrap=True)
    if not report["valid"]:
        raise typer.Exit(1)
