"""``cocoon worker``: run a worker node, or compute a model hash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cocoon.cli.options import HomeOpt, JsonOpt, cli_app, global_options, record

__all__ = ["app"]

app = cli_app(help="Run a worker node (--config FILE), or hash a model's weights.")


@app.callback(invoke_without_command=True)
def run_worker(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML config ([worker] section).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address the health endpoint listens on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port of the health endpoint (0 = any free port).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """With no subcommand: run a worker node (flags override the config file and COCOON_WORKER__*)."""
    options = record(ctx, home, as_json)
    if ctx.invoked_subcommand is not None:
        return
    from cocoon.cli.runner import cli_errors, run_async, serve_node
    from cocoon.core.settings import load_config
    from cocoon.core.statedir import private_dir
    from cocoon.worker import Worker, WorkerConfig

    overrides = {"home": options.home, "health_host": host, "health_port": port}
    with cli_errors():
        node_config = load_config(WorkerConfig, config, section="worker", overrides=overrides)
        private_dir(node_config.home)  # keys and ledgers: readable by the owner only
        worker = Worker(node_config)

    def summary() -> dict[str, str]:
        return {
            "health": worker.health_url,
            "proxies": ", ".join(worker.config.proxies) or "-",
            "home": str(worker.config.home),
        }

    run_async(serve_node(worker, "worker", summary))


@app.command("model-hash")
def model_hash_cmd(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A model file or directory.", exists=True)],
) -> None:
    """Print the reproducible model hash (SHA-256 Merkle over the weight files) to allow on chain."""
    from cocoon.cli.runner import cli_errors
    from cocoon.inference import model_hash

    with cli_errors():
        digest = model_hash(path).hex()
    if global_options(ctx).json:
        typer.echo(json.dumps({"path": str(path), "model_hash": digest}))
    else:
        typer.echo(digest)
