"""Child processes of a benchmark: each with its own log file, awaited with a deadline, always stopped.

A chain under test runs outside the benchmark's process so its CPU can be read from ``/proc`` and so
each tier can have a process of its own, as on separate machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from cocoon.errors import CocoonError

__all__ = ["BenchSetupError", "Child", "Layout", "free_port", "stop_all", "wait_for"]

# How a chain's three tiers are placed: a process each (a machine per node), or all in one process.
Layout = Literal["separate", "one"]


class BenchSetupError(CocoonError):
    """A process the benchmark needs did not start or did not become ready in time."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", **self.env}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchSetupError(f"{self.name} was never started")
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchSetupError(f"{self.name} exited with status {self.proc.returncode}:\n{self.tail()}")

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to the child's whole session (nginx's workers too), then SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def stop_all(children: Sequence[Child]) -> None:
    for child in reversed(children):
        with contextlib.suppress(Exception):
            child.stop()


async def wait_for(
    check: Callable[[], Awaitable[bool]],
    *,
    what: str,
    watch: Sequence[Child] = (),
    timeout: float = 60.0,
    interval: float = 0.05,
) -> None:
    """Poll ``check`` until it is true; fail early when a watched child dies, late at ``timeout``."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        for child in watch:
            child.check_alive()
        try:
            if await check():
                return
        except (
            OSError,
            ValueError,
            KeyError,
            httpx.HTTPError,
        ) as exc:  # not listening yet, or a partial answer
            last = exc
        await asyncio.sleep(interval)
    logs = "\n".join(f"--- {c.name} ---\n{c.tail()}" for c in watch)
    raise BenchSetupError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last!r})\n{logs}")
