"""The ``cocoon`` command: run nodes, a whole local network, and talk to it.

Every command runs the async API with ``asyncio.run``; long steps show Rich progress.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from cocoon import __version__
from cocoon.cli import bench_cmd, chain_cmd, client_cmd, health_cmd, proxy_cmd, tee_cmd, worker_cmd
from cocoon.cli.runner import DEFAULT_HOME, console, run_async, wait_for_signal
from cocoon.errors import CocoonError
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig

__all__ = ["app", "main"]

app = typer.Typer(
    name="cocoon",
    help="Cocoon: private AI inference on TON, with attested nodes end to end.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

DEFAULT_BASE_URL = "http://127.0.0.1:10000/v1"

HomeOpt = Annotated[Path, typer.Option("--home", help="State directory (keys, ledgers, chain).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what the nodes do.")] = False,
) -> None:
    _logging(verbose)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def _network_config(
    home: Path, workers: int, ephemeral: bool, model: Path | None, engine_url: str | None
) -> LocalNetworkConfig:
    from cocoon.worker import EngineSettings

    engine = EngineSettings(kind="http", url=engine_url) if engine_url else EngineSettings(model_path=model)
    if ephemeral:
        # Free ports (no clash with a running `cocoon up`), but the same real money on the chain.
        return LocalNetworkConfig.ephemeral(home, workers=workers, engine=engine, chain=True)
    return LocalNetworkConfig(home=home, workers=workers, engine=engine)


async def _start_network(config: LocalNetworkConfig) -> LocalNetwork:
    with console.status("starting the local network") as status:
        network = LocalNetwork(config, on_step=lambda step: status.update(step))
        await network.start()
    return network


@app.command()
def up(
    workers: Annotated[int, typer.Option(min=1, max=16, help="Workers to start.")] = 1,
    home: HomeOpt = DEFAULT_HOME / "local",
    model: Annotated[Path | None, typer.Option(help="GGUF model for the embedded engine.")] = None,
    engine_url: Annotated[
        str | None, typer.Option(help="Serve an OpenAI-compatible upstream instead.")
    ] = None,
) -> None:
    """Start a whole local network (proxy, workers, client) and serve until Ctrl-C."""

    async def run() -> None:
        network = await _start_network(_network_config(home, workers, False, model, engine_url))
        try:
            console.print(f"[green]ready[/]: OpenAI base URL [bold]{network.base_url}[/]")
            typer.echo(network.base_url)
            await wait_for_signal()
        finally:
            await network.stop()

    run_async(run())


@app.command()
def chat(
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    base_url: Annotated[str, typer.Option(help="The client's OpenAI base URL.")] = DEFAULT_BASE_URL,
    model: Annotated[str | None, typer.Option(help="Model id (default: the first served).")] = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 128,
    api_key: Annotated[str, typer.Option(envvar="COCOON_API_KEY")] = "cocoon",
    temperature: Annotated[float | None, typer.Option(min=0, max=2, help="Sampling temperature.")] = None,
) -> None:
    """Send one chat request to a running client and stream the answer."""
    run_async(_chat(base_url, prompt, model, max_tokens, api_key, temperature))


async def _chat(
    base_url: str,
    prompt: str,
    model: str | None,
    max_tokens: int,
    api_key: str,
    temperature: float | None = None,
) -> dict[str, object]:
    import openai

    async with openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0) as oai:
        if model is None:
            models = await oai.models.list()
            if not models.data:
                raise CocoonError("the network serves no model yet")
            model = models.data[0].id
        started = time.perf_counter()
        first_token: float | None = None
        usage: dict[str, object] = {}
        stream = await oai.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            stream=True,
            temperature=openai.omit if temperature is None else temperature,
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                if first_token is None:
                    first_token = time.perf_counter() - started
                sys.stdout.write(chunk.choices[0].delta.content)
                sys.stdout.flush()
            if chunk.usage is not None:
                usage = chunk.usage.model_dump()
        sys.stdout.write("\n")
        elapsed = time.perf_counter() - started
        cost = usage.get("cost", 0)
        console.print(
            f"[dim]{model}: {usage.get('completion_tokens', '?')} tokens in {elapsed:.2f}s"
            f" (first token {first_token or 0:.3f}s), cost {cost} nanoTON[/]"
        )
        return usage


@app.command()
def demo(
    home: HomeOpt = DEFAULT_HOME / "demo",
    prompt: Annotated[
        str, typer.Option(help="The demo question.")
    ] = "Why is the sky blue? Answer in one sentence.",
) -> None:
    """Start a local network, answer one chat request through it, shut down cleanly."""

    async def run() -> None:
        network = await _start_network(_network_config(home, 1, True, None, None))
        try:
            console.print(f"[green]network up[/]: client at {network.base_url}; asking: {prompt!r}")
            # Greedy decoding: the small demo model answers best without sampling.
            usage = await _chat(network.base_url, prompt, None, 64, "cocoon", 0.0)
            if not usage.get("completion_tokens"):
                raise CocoonError("the demo answer carried no usage")
        finally:
            with console.status("shutting down"):
                await network.stop()
        console.print("[green]demo complete[/]: client → proxy → worker → model and back, over RA-TLS")

    run_async(run())


for _name, _module in (
    ("worker", worker_cmd),
    ("proxy", proxy_cmd),
    ("client", client_cmd),
    ("tee", tee_cmd),
    ("chain", chain_cmd),
    ("bench", bench_cmd),
):
    app.add_typer(_module.app, name=_name)
app.command("health")(health_cmd.command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
