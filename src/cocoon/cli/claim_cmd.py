"""``cocoon worker claim`` / ``cocoon client claim``: post the proxy's signed statements held in the
node's home on chain yourself (a worker is paid, a client's charges settle) when the proxy does not."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cocoon.cli.console import lazy_console, make_table
from cocoon.cli.options import global_options

if TYPE_CHECKING:
    from cocoon.chain import ChainSettings
    from cocoon.node.statements import ClaimResult

__all__ = ["client_claim", "worker_claim"]

console = lazy_console(soft_wrap=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="The node's TOML config.")]
WalletKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--wallet-key", help="Seed of the wallet that posts and pays the gas (default <home>/wallet.key)."
    ),
]


def worker_claim(ctx: typer.Context, config: ConfigOpt = None, wallet_key: WalletKeyOpt = None) -> None:
    """Post the held signed payouts the worker contract has not paid yet (the owner is paid)."""
    from cocoon.cli.runner import cli_errors, fail
    from cocoon.core.settings import load_config
    from cocoon.worker import WorkerConfig

    options = global_options(ctx)
    with cli_errors():
        node = load_config(WorkerConfig, config, section="worker", overrides={"home": options.home})
    if node.root is None:
        raise fail("claiming needs [worker.root]: the chain to post on")
    _claim(ctx, node.root, node.home, wallet_key or node.home / "wallet.key")


def client_claim(ctx: typer.Context, config: ConfigOpt = None, wallet_key: WalletKeyOpt = None) -> None:
    """Post the held signed charges the client contract has not taken yet (settles before a close)."""
    from cocoon.cli.runner import cli_errors, fail
    from cocoon.client import ClientConfig
    from cocoon.core.settings import load_config

    options = global_options(ctx)
    with cli_errors():
        node = load_config(ClientConfig, config, section="client", overrides={"home": options.home})
    if node.chain is None:
        raise fail("claiming needs [client.chain]: the chain to post on")
    key_file = wallet_key or node.chain.wallet_key_file or node.home / "wallet.key"
    _claim(ctx, node.chain, node.home, key_file)


def _claim(ctx: typer.Context, settings: ChainSettings, home: Path, key_file: Path) -> None:
    from cocoon.cli.runner import run_async

    results = run_async(_post(settings, home, key_file))
    if global_options(ctx).json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in results]))
        return
    if not results:
        console.print("no statement held: nothing to claim")
        return
    table = make_table("contract", "signed up to (tokens)", "on chain before", "posted")
    for r in results:
        table.add_row(r.target, str(r.counter), str(r.before), "yes" if r.posted else "already paid")
    console.print(table)


async def _post(settings: ChainSettings, home: Path, key_file: Path) -> list[ClaimResult]:
    from cocoon.chain import KeyPair, Wallet, WalletClient, open_chain
    from cocoon.core.keyfile import load_seed
    from cocoon.node.statements import StatementStore, claim_held

    key = KeyPair.from_seed(load_seed(key_file))
    chain = open_chain(settings)
    try:
        return await claim_held(chain, WalletClient(chain, Wallet(key)), StatementStore(home))
    finally:
        await chain.aclose()
