"""A fake OpenAI-compatible upstream in its own process: ``python upstream.py PORT_FILE [options]``.

Streams a scripted answer (``--chunks`` pieces, ``--delay`` seconds before each, ``--open-delay`` before
the response starts); writes its base URL to
PORT_FILE once listening; ``GET /_stats`` reports what its engine saw (opened, completed, cancelled).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from cocoon.inference import Script, ScriptedEngine, Usage
from cocoon.inference.server import build_engine_app, running_server


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port_file", type=Path)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--chunk-bytes", type=int, default=16)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--open-delay", type=float, default=0.0, help="seconds before the answer starts")
    parser.add_argument("--model", default="fault-model")
    args = parser.parse_args()
    # Usage consistent with what is streamed, so the proxy's metering audit has nothing to flag.
    usage = Usage(prompt_tokens=10, completion_tokens=args.chunks)
    script = Script(chunks=args.chunks, chunk_bytes=args.chunk_bytes, delay=args.delay, usage=usage)

    async def handler(endpoint: object, body: object) -> Script:
        await asyncio.sleep(args.open_delay)
        return script

    if args.open_delay:
        engine = ScriptedEngine(handler=handler, model_name=args.model)
    else:
        engine = ScriptedEngine(script, model_name=args.model)
    app = build_engine_app(engine, close_engine=True)

    @app.get("/_stats")
    async def stats() -> dict[str, Any]:
        return dataclasses.asdict(engine.stats)

    async with running_server(app) as url:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(url)
        tmp.rename(args.port_file)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
