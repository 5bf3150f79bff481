"""``cocoon client ...``: the app developer's view of a running client (spend, receipts, proxies, money).

The money commands (``balance``, ``top-up``, ``withdraw``, ``close``) talk to the running client over
its local HTTP API (``/cocoon/...``); the client holds the wallet key and moves the funds on chain.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from cocoon.node.receipt import ReceiptError, verify_receipt

__all__ = ["app"]

app = typer.Typer(
    help="Run a client node (--config FILE), or talk to a running one: status, balance, top-up, "
    "withdraw, close, receipts."
)
console = Console()
UrlOpt = Annotated[str, typer.Option(help="The client's address.", envvar="COCOON_CLIENT_URL")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
NANO = 10**9


def _get(url: str, path: str, **params: Any) -> dict[str, Any]:
    try:
        with httpx.Client(timeout=10) as http:
            return dict(http.get(url.rstrip("/") + path, params=params).raise_for_status().json())
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach the client at {url}:[/] {exc}")
        raise typer.Exit(1) from None


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        with httpx.Client(timeout=30) as http:
            response = http.post(url.rstrip("/") + path, json=body)
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach the client at {url}:[/] {exc}")
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        console.print(f"[red]refused ({response.status_code}):[/] {message}")
        raise typer.Exit(1)
    return dict(response.json())


def _nano(ton: float) -> int:
    return round(ton * NANO)


def _contract_table(chain: dict[str, Any], title: str = "client contract (on chain)") -> Table:
    table = Table(title=title, show_header=False)
    table.add_row("contract", str(chain.get("contract")))
    table.add_row("state", str(chain.get("state")))
    for key, label in (
        ("balance_nano", "balance"),
        ("stake_nano", "stake"),
        ("charged_nano", "charged"),
        ("wallet_balance_nano", "wallet"),
    ):
        table.add_row(label, f"{int(chain.get(key, 0)) / NANO:.9f} TON")
    table.add_row("tokens charged", str(chain.get("tokens_used")))
    if chain.get("unlock_ts"):
        table.add_row("refund possible at", str(chain.get("unlock_ts")))
    return table


def _chain_result(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        console.print(_contract_table(report.get("chain", {})))


@app.callback(invoke_without_command=True)
def run_client(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML config ([client] section).")
    ] = None,
) -> None:
    """With no subcommand: run a client node."""
    if ctx.invoked_subcommand is not None:
        return
    from cocoon.cli.runner import run_async, serve_node
    from cocoon.client import Client, ClientConfig
    from cocoon.core.settings import load_config

    run_async(serve_node(Client(load_config(ClientConfig, config, section="client")), "client"))


@app.command()
def status(url: UrlOpt = "http://127.0.0.1:10000", as_json: JsonOpt = False) -> None:
    """Proxy links, requests, spend."""
    report = _get(url, "/health")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title="client", show_header=False)
    for key in ("state", "requests", "succeeded", "failed"):
        table.add_row(key, str(report.get(key)))
    table.add_row("spent", f"{report.get('spent_nano', 0) / NANO:.9f} TON")
    left = report.get("budget_left_nano")
    table.add_row("budget left today", "unlimited" if left is None else f"{left / NANO:.9f} TON")
    for proxy in report.get("proxies", []):
        table.add_row(f"proxy {proxy['address']}", "connected" if proxy["connected"] else "reconnecting")
    console.print(table)


@app.command()
def balance(url: UrlOpt = "http://127.0.0.1:10000", as_json: JsonOpt = False) -> None:
    """The client contract on chain (balance, stake, charged) and what the proxy says was used."""
    report = _get(url, "/cocoon/balance")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    if report.get("chain"):
        console.print(_contract_table(report["chain"]))
    table = Table(title="balance at the proxy", show_header=False)
    for key, value in sorted(report.get("proxy", {}).items()):
        table.add_row(key, str(value))
    table.add_row("spent here", f"{report.get('spent_nano', 0) / NANO:.9f} TON")
    console.print(table)


@app.command("top-up")
def top_up(
    amount: Annotated[float, typer.Argument(min=0, help="TON to add to the client contract.")],
    url: UrlOpt = "http://127.0.0.1:10000",
    as_json: JsonOpt = False,
) -> None:
    """Move TON from the client's wallet into its contract (opens the contract the first time)."""
    _chain_result(_post(url, "/cocoon/top-up", {"amount_nano": _nano(amount)}), as_json)


@app.command()
def withdraw(
    amount: Annotated[
        float, typer.Argument(min=0, help="TON to take back; 0 = everything above the stake.")
    ] = 0.0,
    url: UrlOpt = "http://127.0.0.1:10000",
    as_json: JsonOpt = False,
) -> None:
    """Take funds above the stake back to the client's wallet."""
    _chain_result(_post(url, "/cocoon/withdraw", {"amount_nano": _nano(amount)}), as_json)


@app.command()
def close(url: UrlOpt = "http://127.0.0.1:10000", as_json: JsonOpt = False) -> None:
    """Close the contract: the first call starts the close delay, a call after it refunds everything."""
    _chain_result(_post(url, "/cocoon/close", {}), as_json)


@app.command()
def receipts(
    url: UrlOpt = "http://127.0.0.1:10000",
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    as_json: JsonOpt = False,
) -> None:
    """The last answers' signed usage receipts."""
    items = _get(url, "/cocoon/receipts", limit=limit)["receipts"]
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table(title="receipts")
    for column in ("model", "prompt", "completion", "cost (nanoTON)", "verified"):
        table.add_column(column)
    for item in items:
        usage = item.get("usage", {})
        worker = (item.get("receipt") or {}).get("worker", {}).get("body", {})
        table.add_row(
            str(worker.get("model", "?")),
            str(usage.get("prompt_tokens")),
            str(usage.get("completion_tokens")),
            str(item.get("cost_nano")),
            "yes" if item.get("receipt_verified") else "no",
        )
    console.print(table)


@app.command("verify-receipt")
def verify_receipt_cmd(
    file: Annotated[
        Path, typer.Argument(help="A receipt JSON (one item of `cocoon client receipts --json`).")
    ],
    response: Annotated[Path | None, typer.Option(help="The raw answer bytes to check against.")] = None,
    worker_key: Annotated[str | None, typer.Option(help="The attested worker key (hex) to expect.")] = None,
) -> None:
    """Check a receipt's signatures offline (exit 0 only if valid)."""
    try:
        data = json.loads(file.read_text())
        receipt = data.get("receipt", data)
        verified = verify_receipt(
            receipt,
            response_bytes=response.read_bytes() if response else None,
            expected_worker_key=bytes.fromhex(worker_key) if worker_key else None,
        )
    except (OSError, ValueError, ReceiptError) as exc:
        console.print(f"[red]invalid receipt:[/] {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"[green]valid[/]: model {verified.model}, usage {verified.usage}, cost {verified.cost_nano} nanoTON, "
        f"worker key {verified.worker_key.hex()[:16]}…"
    )
