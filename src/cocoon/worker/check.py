"""``cocoon worker --check``: does this config give a worker that the proxies admit, before serving?

The check starts the worker as it would run (engine, model hash, the root contract's lists, RA-TLS
identity, every proxy link) but draining, so it answers nothing, waits for each proxy to admit it
(an admitted link is one whose handshake the proxy completed: refusals — an image or model the root
does not allow, an owner that is not a wallet — come back as the handshake's error), and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from cocoon import net
from cocoon.errors import CocoonError
from cocoon.inference import Engine
from cocoon.worker.config import WorkerConfig
from cocoon.worker.service import Worker

__all__ = ["CheckLine", "check_worker"]


@dataclass(frozen=True, slots=True)
class CheckLine:
    what: str
    ok: bool
    detail: str


async def _admitted(worker: Worker, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await worker.wait_connected()


async def check_worker(
    config: WorkerConfig,
    *,
    timeout_s: float = 20.0,
    engine: Engine | None = None,
    links: net.Links | None = None,
) -> list[CheckLine]:
    """What the check found, in order; every line ``ok`` means the worker would serve."""
    lines = [CheckLine("config", True, f"valid; home {config.home}")]
    # Port 0: the check must not collide with a running worker's health port.
    worker = Worker(config.model_copy(update={"health_port": 0}), engine=engine, links=links)
    worker.draining = True  # answers nothing: a request routed meanwhile goes to another worker
    try:
        await worker.start()
    except (CocoonError, OSError) as exc:
        lines.append(CheckLine("start", False, str(exc)))
        return lines
    try:
        stats = worker.statistics()
        lines.append(CheckLine("engine", await worker.engine_healthy(), f"serves {stats['model']}"))
        lines.append(CheckLine("model hash", True, stats["model_hash"]))
        lines.append(
            CheckLine("attestation", True, f"{config.tee.backend}; image {stats['image_hash'] or '-'}")
        )
        await _admitted(worker, timeout_s)
        for proxy in worker.statistics()["proxies"]:
            if proxy["connected"]:
                lines.append(
                    CheckLine(f"proxy {proxy['address']}", True, "attested and admitted this worker")
                )
            else:
                reason = proxy.get("last_error") or f"no answer within {timeout_s:g} s"
                lines.append(CheckLine(f"proxy {proxy['address']}", False, reason))
    finally:
        await worker.stop(drain=False)
    return lines
