"""``cocoon worker dispute``: void a slash claim the proxy contradicted itself on.

The worker keeps the proxy's slash receipts (its signed word that a request was served correctly,
``<home>/slash-receipts.sqlite``). This command reads the pending slash claim of each worker
contract it holds receipts for and, when it holds the receipt for the claimed evidence, posts the
dispute from the owner's wallet: the claim is voided and nothing is slashed.
"""

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
    from cocoon.node.slashreceipts import DisputeResult

__all__ = ["worker_dispute"]

console = lazy_console(soft_wrap=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="The worker's TOML config.")]
WalletKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--wallet-key",
        help="Seed of the owner's wallet (only the owner may dispute; default <home>/wallet.key).",
    ),
]


def worker_dispute(ctx: typer.Context, config: ConfigOpt = None, wallet_key: WalletKeyOpt = None) -> None:
    """Dispute pending slash claims with the proxy's own receipts for the same requests."""
    from cocoon.cli.runner import cli_errors, fail, run_async
    from cocoon.core.settings import load_config
    from cocoon.worker import WorkerConfig

    options = global_options(ctx)
    with cli_errors():
        node = load_config(WorkerConfig, config, section="worker", overrides={"home": options.home})
    if node.root is None:
        raise fail("disputing needs [worker.root]: the chain the worker contract is on")
    results = run_async(_dispute(node.root, node.home, wallet_key or node.home / "wallet.key"))
    if options.json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in results]))
        return
    if not results:
        console.print("no slash claim pending on the worker contracts this home holds receipts for")
        return
    table = make_table("contract", "claimed evidence", "disputed")
    for r in results:
        table.add_row(r.target, r.evidence_hash, "yes" if r.disputed else "no receipt for it")
    console.print(table)


async def _dispute(settings: ChainSettings, home: Path, key_file: Path) -> list[DisputeResult]:
    from cocoon.chain import KeyPair, Wallet, WalletClient, open_chain
    from cocoon.core.keyfile import load_seed
    from cocoon.node.slashreceipts import HeldReceipts, dispute_pending

    key = KeyPair.from_seed(load_seed(key_file))
    chain = open_chain(settings)
    try:
        return await dispute_pending(chain, WalletClient(chain, Wallet(key)), HeldReceipts(home))
    finally:
        await chain.aclose()
