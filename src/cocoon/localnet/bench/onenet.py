"""The whole local network (client, proxy, worker) in one process of its own, for the gateway bench.

``python -m cocoon.localnet.bench.onenet URL_FILE UPSTREAM_URL HOME MAX_ACTIVE``: the same
:class:`LocalNetwork` as ``cocoon bench gateway``'s in-process run (sim attestation, no chain, one
worker on the HTTP upstream), but outside the benchmark's process, so its CPU can be measured alone.
Writes the client's OpenAI base URL to ``URL_FILE`` when ready; stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from cocoon.core import eventloop
from cocoon.localnet.bench.upstream import publish_url
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.worker import EngineSettings

__all__ = ["serve_one_process_network"]


async def serve_one_process_network(url_file: Path, upstream_url: str, home: Path, max_active: int) -> None:
    config = LocalNetworkConfig.ephemeral(
        home,
        workers=1,
        engine=EngineSettings(kind="http", url=upstream_url),
        max_active_requests=max_active,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with LocalNetwork(config) as network:
        publish_url(url_file, network.base_url)
        await stop.wait()


if __name__ == "__main__":
    if len(sys.argv) != 5 or not sys.argv[4].isdigit():
        sys.exit("usage: python -m cocoon.localnet.bench.onenet URL_FILE UPSTREAM_URL HOME MAX_ACTIVE")
    eventloop.run(
        serve_one_process_network(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
    )
