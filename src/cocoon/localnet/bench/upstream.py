"""The gateway benchmark's fake OpenAI upstream in a process of its own.

``python -m cocoon.localnet.bench.upstream URL_FILE PORT [EVENTS]``: streams the reference shape (50 SSE
events of 128 B, :data:`GATEWAY_SCRIPT`; ``EVENTS`` of them when given) to every request on
127.0.0.1:PORT and writes its base URL to ``URL_FILE`` once it listens (the port is chosen by the
caller so the chains can start meanwhile).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

from cocoon.inference import Script, ScriptedEngine
from cocoon.inference.server import build_engine_app, running_server

__all__ = ["GATEWAY_SCRIPT", "MODEL", "publish_url"]

GATEWAY_SCRIPT = Script(chunks=50, chunk_bytes=128)
MODEL = "scripted-model"


def publish_url(url_file: Path, url: str) -> None:
    """Write ``url`` so that a reader never sees half of it (write aside, then rename)."""
    partial = url_file.with_suffix(".partial")
    partial.write_text(url)
    partial.rename(url_file)


async def _serve(url_file: Path, port: int, events: int) -> None:
    script = dataclasses.replace(GATEWAY_SCRIPT, chunks=events)
    app = build_engine_app(ScriptedEngine(script, model_name=MODEL), close_engine=True)
    async with running_server(app, port=port) as url:
        publish_url(url_file, url)
        await asyncio.Event().wait()  # until the benchmark terminates this process


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or not all(a.isdigit() for a in sys.argv[2:]):
        sys.exit("usage: python -m cocoon.localnet.bench.upstream URL_FILE PORT [EVENTS]")
    events = int(sys.argv[3]) if len(sys.argv) == 4 else GATEWAY_SCRIPT.chunks
    asyncio.run(_serve(Path(sys.argv[1]), int(sys.argv[2]), events))
