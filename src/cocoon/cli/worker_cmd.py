"""``cocoon worker``: run a worker node, or compute a model hash."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(help="Run a worker node (--config FILE), or hash a model's weights.")


@app.callback(invoke_without_command=True)
def run_worker(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML config ([worker] section).")
    ] = None,
) -> None:
    """With no subcommand: run a worker node."""
    if ctx.invoked_subcommand is not None:
        return
    from cocoon.cli.runner import run_async, serve_node
    from cocoon.core.settings import load_config
    from cocoon.worker import Worker, WorkerConfig

    run_async(serve_node(Worker(load_config(WorkerConfig, config, section="worker")), "worker"))


@app.command("model-hash")
def model_hash_cmd(
    path: Annotated[Path, typer.Argument(help="A model file or directory.", exists=True)],
) -> None:
    """Print the reproducible model hash (SHA-256 Merkle over the weight files) to allow on chain."""
    from cocoon.inference import model_hash

    typer.echo(model_hash(path).hex())
