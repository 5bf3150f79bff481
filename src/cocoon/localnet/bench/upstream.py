"""The gateway benchmark's fake OpenAI upstream in a process of its own.

``python -m cocoon.localnet.bench.upstream URL_FILE PORT [EVENTS]``: streams the reference shape (50 SSE
events of 128 B, :data:`GATEWAY_SCRIPT`; ``EVENTS`` of them when given) on 127.0.0.1:PORT and writes
its base URL to ``URL_FILE`` once it listens (the port is chosen by the caller so the chains can start
meanwhile). A request may name its own count in :data:`EVENTS_FIELD` (the bench measures two counts
in one run to split each tier's CPU into a fixed and a per-event part, without a restart).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

from cocoon.inference import Endpoint, Script, ScriptedEngine
from cocoon.inference.server import build_engine_app, running_server

__all__ = ["EVENTS_FIELD", "GATEWAY_SCRIPT", "MAX_EVENTS", "MODEL", "events_handler", "publish_url"]

GATEWAY_SCRIPT = Script(chunks=50, chunk_bytes=128)
MODEL = "scripted-model"
EVENTS_FIELD = "bench_events"  # an extra request field: every hop forwards it unchanged
MAX_EVENTS = 100_000


def events_handler(default: Script) -> Any:
    """A :class:`ScriptedEngine` handler: ``default``, with the request's own event count if it has one."""
    scripts: dict[int, Script] = {default.chunks: default}

    def handler(_endpoint: Endpoint, body: dict[str, Any]) -> Script:
        asked = body.get(EVENTS_FIELD)
        if not isinstance(asked, int) or isinstance(asked, bool) or not 0 <= asked <= MAX_EVENTS:
            return default
        script = scripts.get(asked)
        if script is None:
            script = scripts[asked] = dataclasses.replace(default, chunks=asked)
        return script

    return handler


def publish_url(url_file: Path, url: str) -> None:
    """Write ``url`` so that a reader never sees half of it (write aside, then rename)."""
    partial = url_file.with_suffix(".partial")
    partial.write_text(url)
    partial.rename(url_file)


async def _serve(url_file: Path, port: int, events: int) -> None:
    script = dataclasses.replace(GATEWAY_SCRIPT, chunks=events)
    engine = ScriptedEngine(handler=events_handler(script), model_name=MODEL)
    app = build_engine_app(engine, close_engine=True)
    async with running_server(app, port=port) as url:
        publish_url(url_file, url)
        await asyncio.Event().wait()  # until the benchmark terminates this process


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or not all(a.isdigit() for a in sys.argv[2:]):
        sys.exit("usage: python -m cocoon.localnet.bench.upstream URL_FILE PORT [EVENTS]")
    events = int(sys.argv[3]) if len(sys.argv) == 4 else GATEWAY_SCRIPT.chunks
    asyncio.run(_serve(Path(sys.argv[1]), int(sys.argv[2]), events))
