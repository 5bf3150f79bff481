"""``cocoon up`` and ``cocoon demo``: a whole local network in this process.

``up`` serves until Ctrl-C and prints where everything listens: the OpenAI base URL (also alone on
stdout, for scripts; ``--json`` prints every endpoint as JSON there instead), the proxy's operator
view and RA-TLS ports, each worker's health endpoint, the root contract and the chain file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cocoon.cli.options import global_options
from cocoon.cli.runner import CliError, console, default_home, print_summary, run_async, wait_for_signal

if TYPE_CHECKING:
    from cocoon.localnet import LocalNetwork, LocalNetworkConfig

__all__ = ["demo", "up"]

PortOpt = Annotated[int, typer.Option(min=0, max=65535)]


def _engine(model: Path | None, engine_url: str | None) -> Any:
    from cocoon.worker import EngineSettings

    return EngineSettings(kind="http", url=engine_url) if engine_url else EngineSettings(model_path=model)


async def _start(config: LocalNetworkConfig) -> LocalNetwork:
    from cocoon.localnet import LocalNetwork

    with console.status("starting the local network") as status:
        network = LocalNetwork(config, on_step=lambda step: status.update(step))
        await network.start()
    return network


def _summary_rows(endpoints: dict[str, Any]) -> dict[str, str]:
    rows = {
        "OpenAI base URL": endpoints["openai_base_url"],
        "proxy operator view": endpoints["proxy_stats_url"],
        "proxy RA-TLS (workers / clients)": (
            f"{endpoints['proxy_workers_address']} / {endpoints['proxy_clients_address']}"
        ),
    }
    for index, url in enumerate(endpoints["worker_health_urls"]):
        rows[f"worker {index} health"] = url
    if endpoints["root_address"]:
        rows["root contract"] = endpoints["root_address"]
        rows["chain"] = endpoints["chain"]
    rows["home"] = endpoints["home"]
    return rows


def up(
    ctx: typer.Context,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Workers to start.")] = 1,
    model: Annotated[Path | None, typer.Option(help="GGUF model for the embedded engine.")] = None,
    engine_url: Annotated[
        str | None, typer.Option(help="Serve an OpenAI-compatible upstream instead.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address every node listens on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Client's OpenAI API port (0 = any free).")
    ] = 10000,
    proxy_port: Annotated[
        int,
        typer.Option(
            min=0, max=65533, help="Proxy operator view; RA-TLS for workers and clients on the next two."
        ),
    ] = 11000,
    health_port: Annotated[
        int, typer.Option(min=0, max=65535, help="Worker 0's health endpoint; worker i uses this + i.")
    ] = 12000,
) -> None:
    """Start a whole local network (proxy, workers, client) and serve until Ctrl-C.

    State (keys, ledgers, the chain) lives in --home, by default ~/.cocoon/local.
    """
    from cocoon.localnet import LocalNetworkConfig

    options = global_options(ctx)
    config = LocalNetworkConfig(
        home=options.home or default_home() / "local",
        workers=workers,
        engine=_engine(model, engine_url),
        host=host,
        client_port=port,
        proxy_stats_port=proxy_port,
        proxy_worker_port=proxy_port + 1 if proxy_port else 0,
        proxy_client_port=proxy_port + 2 if proxy_port else 0,
        worker_health_port=health_port,
    )

    async def run() -> None:
        network = await _start(config)
        try:
            endpoints = network.endpoints()
            print_summary("ready (Ctrl-C to stop)", _summary_rows(endpoints))
            typer.echo(json.dumps(endpoints) if options.json else network.base_url)
            await wait_for_signal()
        finally:
            await network.stop()

    run_async(run())


def demo(
    ctx: typer.Context,
    prompt: Annotated[
        str, typer.Option(help="The demo question.")
    ] = "Why is the sky blue? Answer in one sentence.",
) -> None:
    """Start a local network, answer one chat request through it, shut down cleanly.

    State lives in --home, by default ~/.cocoon/demo.
    """
    from cocoon.cli.chat_cmd import ask
    from cocoon.localnet import LocalNetworkConfig

    home = global_options(ctx).home or default_home() / "demo"
    # Free ports (no clash with a running `cocoon up`), but the same real money on the chain.
    config = LocalNetworkConfig.ephemeral(home, workers=1, engine=_engine(None, None), chain=True)

    async def run() -> None:
        network = await _start(config)
        try:
            console.print(
                f"[green]network up[/]: client at {network.base_url}; asking: {prompt!r}", markup=True
            )
            # Greedy decoding: the small demo model answers best without sampling.
            usage = await ask(network.base_url, prompt, max_tokens=64, temperature=0.0)
            if not usage.get("completion_tokens"):
                raise CliError("the demo answer carried no usage")
        finally:
            with console.status("shutting down"):
                await network.stop()
        console.print("[green]demo complete[/]: client → proxy → worker → model and back, over RA-TLS")

    run_async(run())
