"""What every ``cocoon`` sub-command shares: the console, one-line errors, running a coroutine, and
serving a node until a signal.

A routine failure (a :class:`~cocoon.errors.CocoonError`, a file or socket error, a refused request)
is one line on stderr, ``error: ...``, and exit status 1; only a bug shows a traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import typer

from cocoon.cli.console import assemble_text, lazy_console, make_text
from cocoon.errors import CocoonError

__all__ = [
    "EXIT_REFUSED",
    "CliError",
    "cli_errors",
    "console",
    "default_home",
    "fail",
    "print_summary",
    "run_async",
    "serve_node",
    "wait_for_signal",
]

T = TypeVar("T")
EXIT_REFUSED = 3  # a node every peer refused for good (bad owner address, model not allowed)
console = lazy_console(stderr=True, soft_wrap=True)  # one message, one line: never wrapped at 80 columns


class CliError(CocoonError):
    """A routine failure found by the CLI itself (bad input, a refused request)."""


def default_home() -> Path:
    """``$COCOON_HOME`` or ``~/.cocoon``, read when a command runs (not at import)."""
    return Path(os.environ.get("COCOON_HOME", "~/.cocoon")).expanduser()


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` as one line on stderr; return the exit to raise."""
    one_line = " ".join(message.split())  # a multi-line message from below still gives one line
    console.print(assemble_text(("error: ", "bold red"), one_line), soft_wrap=True)
    return typer.Exit(code)


def _describe_os_error(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror}{where}" if exc.strerror else str(exc)


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn routine failures inside the block into one line and a non-zero exit."""
    try:
        yield
    except CocoonError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(_describe_os_error(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    from cocoon.core import eventloop

    with cli_errors():
        return eventloop.run(coro)


class _Node(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


async def wait_for_signal() -> None:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def print_summary(title: str, rows: Mapping[str, str]) -> None:
    console.print(f"[green]{title}[/]")
    width = max((len(k) for k in rows), default=0)
    for key, value in rows.items():
        console.print(make_text(f"  {key:<{width}}  {value}"), soft_wrap=True)


async def serve_node(
    node: _Node,
    name: str,
    summary: Callable[[], Mapping[str, str]],
    stdout_line: Callable[[], str] | None = None,
    *,
    refused: Callable[[], Awaitable[str]] | None = None,
) -> None:
    """Start ``node``, print where it listens, serve until SIGINT/SIGTERM, stop it.

    ``stdout_line`` (evaluated after start) goes to stdout alone, for scripts: the client's base URL.
    ``refused``: returns once every peer refused the node for good; it then stops and exits with
    :data:`EXIT_REFUSED` and the reasons (a worker whose owner or model no proxy accepts).
    """
    from cocoon.core.eventloop import freeze_heap

    with console.status(f"starting {name}"):
        await node.start()
    freeze_heap()  # the started node (keys, policies, caches) is long-lived: keep it out of collections
    print_summary(f"{name} running (Ctrl-C to stop)", summary())
    if stdout_line is not None:
        typer.echo(stdout_line())
    reason = ""
    try:
        reason = await _signal_or(refused)
    finally:
        with console.status(f"stopping {name}"):
            await node.stop()
    if reason:
        raise fail(f"{name} refused for good: {reason}", code=EXIT_REFUSED)


async def _signal_or(refused: Callable[[], Awaitable[str]] | None) -> str:
    """ "" after a signal, else the reasons ``refused`` returned first."""
    import asyncio

    if refused is None:
        await wait_for_signal()
        return ""
    signal_task = asyncio.ensure_future(wait_for_signal())
    refused_task = asyncio.ensure_future(refused())
    try:
        await asyncio.wait([signal_task, refused_task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (signal_task, refused_task):
            task.cancel()
    return refused_task.result() if refused_task.done() and not refused_task.cancelled() else ""
