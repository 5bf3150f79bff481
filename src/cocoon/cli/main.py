"""The ``cocoon`` command: run nodes, a whole local network, and talk to it.

Each top-level command and group is a :class:`~cocoon.cli.lazy.LazyEntry`: its module is imported and
its Typer app built when it is used (``tests/cli/test_lazy_commands.py`` builds them all, so a broken
one fails loudly instead of vanishing); each module imports its heavy dependencies (the services, the
chain, the TEE stack, the OpenAI SDK) inside its commands, so ``cocoon --help`` stays fast. Global options (``--home``, ``--json``)
go before or after the sub-command (:mod:`cocoon.cli.options`).
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Annotated

import typer

from cocoon import __version__
from cocoon.cli.lazy import LazyEntry, LazyRootGroup
from cocoon.cli.options import HomeOpt, JsonOpt, cli_app, global_options, record

__all__ = ["ENTRIES", "app", "main"]

# Each entry's first help sentence: `cocoon --help` lists them without building anything.
ENTRIES: dict[str, LazyEntry] = {
    "up": LazyEntry(
        "cocoon.cli.network_cmd:up",
        "Start a whole local network (proxy, workers, client) and serve until Ctrl-C.",
        command=True,
    ),
    "demo": LazyEntry(
        "cocoon.cli.network_cmd:demo",
        "Start a local network, answer one chat request through it, shut down cleanly.",
        command=True,
    ),
    "chat": LazyEntry(
        "cocoon.cli.chat_cmd:command",
        "Send one chat request to a running client and stream the answer.",
        command=True,
    ),
    "health": LazyEntry(
        "cocoon.cli.health_cmd:command",
        "A worker's health: status, sys, svc, logs, tdx, gpu, earnings or all.",
        command=True,
    ),
    "worker": LazyEntry(
        "cocoon.cli.main:_worker",
        "Run a worker node (--config FILE), check or write its config, or hash a model's weights.",
    ),
    "proxy": LazyEntry(
        "cocoon.cli.main:_proxy", "Run a proxy node (--config FILE), or show a running one's status."
    ),
    "client": LazyEntry(
        "cocoon.cli.main:_client",
        "Run a client node (--config FILE), or talk to a running one: status, balance, top-up, "
        "withdraw, close, receipts, verify-receipt.",
    ),
    "tee": LazyEntry(
        "cocoon.cli.tee_cmd:app", "Attestation tools: quotes, image hashes, RA-TLS certificates."
    ),
    "chain": LazyEntry(
        "cocoon.cli.main:_chain", "TON: local chain, root contract, wallets, client contracts."
    ),
    "bench": LazyEntry(
        "cocoon.cli.bench_cmd:app", "Benchmarks: the network against the same work done directly."
    ),
}


class _Root(LazyRootGroup):
    entries = ENTRIES


app = cli_app(
    name="cocoon",
    help="Cocoon: private AI inference on TON, with attested nodes end to end.",
    no_args_is_help=True,
    cls=_Root,
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


# The groups other modules add commands to: made when the entry is first used; cached, so the
# commands are added once however often the tree is built.


@functools.cache
def _worker() -> typer.Typer:
    from cocoon.cli import claim_cmd, dispute_cmd, market_cmd, worker_cmd

    worker_cmd.app.command("claim")(claim_cmd.worker_claim)
    worker_cmd.app.command("dispute")(dispute_cmd.worker_dispute)
    worker_cmd.app.command("stake")(market_cmd.worker_stake)
    worker_cmd.app.command("unstake")(market_cmd.worker_unstake)
    return worker_cmd.app


@functools.cache
def _proxy() -> typer.Typer:
    from cocoon.cli import close_cmd, proxy_cmd

    proxy_cmd.app.command("close")(close_cmd.proxy_close)
    return proxy_cmd.app


@functools.cache
def _client() -> typer.Typer:
    from cocoon.cli import claim_cmd, client_cmd

    client_cmd.app.command("claim")(claim_cmd.client_claim)
    return client_cmd.app


@functools.cache
def _chain() -> typer.Typer:
    from cocoon.cli import chain_cmd, market_cmd

    for name, function in (
        ("market", market_cmd.root_market),
        ("set-class", market_cmd.root_set_class),
        ("remove-class", market_cmd.root_remove_class),
        ("set-collateral", market_cmd.root_set_collateral),
        ("upgrade-code", market_cmd.root_upgrade_code),
    ):
        chain_cmd.root_app.command(name)(function)
    return chain_cmd.app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
