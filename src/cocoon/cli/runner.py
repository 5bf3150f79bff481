"""What every ``cocoon`` sub-command shares: the console, running a coroutine with one-line errors,
and serving a node until a signal."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol

import typer
from rich.console import Console

from cocoon.errors import CocoonError

__all__ = ["DEFAULT_HOME", "console", "run_async", "serve_node", "wait_for_signal"]

console = Console(stderr=True)

DEFAULT_HOME = Path(os.environ.get("COCOON_HOME", "~/.cocoon")).expanduser()


class _Node(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_node(node: _Node, name: str) -> None:
    with console.status(f"starting {name}"):
        await node.start()
    console.print(f"[green]{name} running[/] (Ctrl-C to stop)")
    if name == "client":
        typer.echo(getattr(node, "base_url", ""))
    try:
        await wait_for_signal()
    finally:
        with console.status(f"stopping {name}"):
            await node.stop()


def run_async(coro: Coroutine[Any, Any, Any]) -> None:
    try:
        asyncio.run(coro)
    except CocoonError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
