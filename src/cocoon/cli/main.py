"""The ``cocoon`` command: run nodes, a whole local network, and talk to it.

Every sub-command module is imported here explicitly (a broken one fails loudly instead of
vanishing); each imports its heavy dependencies (the services, the chain, the TEE stack, the OpenAI
SDK) inside its commands, so ``cocoon --help`` stays fast. Global options (``--home``, ``--json``)
go before or after the sub-command (:mod:`cocoon.cli.options`).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from cocoon import __version__
from cocoon.cli import (
    bench_cmd,
    chain_cmd,
    chat_cmd,
    claim_cmd,
    client_cmd,
    close_cmd,
    dispute_cmd,
    health_cmd,
    market_cmd,
    network_cmd,
    proxy_cmd,
    tee_cmd,
    worker_cmd,
)
from cocoon.cli.options import HomeOpt, JsonOpt, cli_app, global_options, record

__all__ = ["app", "main"]

app = cli_app(
    name="cocoon",
    help="Cocoon: private AI inference on TON, with attested nodes end to end.",
    no_args_is_help=True,
)


def _logging(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The level goes on the console handler too: a worker's own logger runs at INFO (for its /logs
    # view), and its records reach the root's handlers whatever the root logger's level is.
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what the nodes do.")] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    record(ctx, home, as_json)
    _logging(verbose)


@app.command()
def version(ctx: typer.Context) -> None:
    """Print the version."""
    if global_options(ctx).json:
        typer.echo(json.dumps({"version": __version__}))
    else:
        typer.echo(__version__)


app.command()(network_cmd.up)
app.command()(network_cmd.demo)
app.command("chat")(chat_cmd.command)
app.command("health")(health_cmd.command)
worker_cmd.app.command("claim")(claim_cmd.worker_claim)
worker_cmd.app.command("dispute")(dispute_cmd.worker_dispute)
worker_cmd.app.command("stake")(market_cmd.worker_stake)
worker_cmd.app.command("unstake")(market_cmd.worker_unstake)
for _cmd, _fn in (
    ("market", market_cmd.root_market),
    ("set-class", market_cmd.root_set_class),
    ("remove-class", market_cmd.root_remove_class),
    ("set-collateral", market_cmd.root_set_collateral),
    ("upgrade-code", market_cmd.root_upgrade_code),
):
    chain_cmd.root_app.command(_cmd)(_fn)
client_cmd.app.command("claim")(claim_cmd.client_claim)
proxy_cmd.app.command("close")(close_cmd.proxy_close)
for _name, _module in (
    ("worker", worker_cmd),
    ("proxy", proxy_cmd),
    ("client", client_cmd),
    ("tee", tee_cmd),
    ("chain", chain_cmd),
    ("bench", bench_cmd),
):
    app.add_typer(_module.app, name=_name)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
