"""Memory per idle attested link, both ends on the nodes' own event loop (uvloop where it imports).

``python -m cocoon.localnet.bench.idlelinks SIM_HOME HOME HOST PORT COUNT``: a process of its own
dials one attested client link to the proxy at HOST:PORT (the first warms imports, TLS contexts and
the proxy's first-client state), prints ``warm <RSS KiB>``, waits for a line on stdin, dials COUNT
more, prints ``open <RSS KiB>`` and holds them until stdin closes. :func:`idle_link_memory` drives it
and reads the proxy's RSS at both points: (Δproxy + Δdialer) ÷ COUNT is what one idle link holds.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cocoon import net, wire
from cocoon.core import eventloop
from cocoon.node.trust import NodeTrust, TeeSettings

__all__ = ["IdleLinkMemory", "idle_link_memory", "rss_kib"]

_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def rss_kib(pid: int | str = "self") -> int:
    """Resident memory of ``pid`` now (``/proc/PID/statm``; 0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


@dataclass(frozen=True)
class IdleLinkMemory:
    links: int
    proxy_kib: float  # the proxy's end, per link
    dialer_kib: float  # the dialing end (a client node's), per link

    @property
    def per_link_kib(self) -> float:
        return self.proxy_kib + self.dialer_kib


async def _settled_rss() -> int:
    await asyncio.sleep(0.2)  # let the peer's side of the last hellos finish
    gc.collect()
    return rss_kib()


async def _hold(sim_home: Path, home: Path, host: str, port: int, count: int) -> None:
    trust = NodeTrust(
        TeeSettings(backend="sim", peer_policy="sim", sim_home=sim_home), home=home, role="client"
    )
    links: list[net.NodeConnection] = []

    async def dial() -> None:
        links.append(
            await net.dial(
                host,
                port,
                ssl_context=trust.client_context(),
                verifier=trust.verify_peer,
                role=wire.Role.CLIENT,
                info={"owner_address": "bench-idle-links"},
                handler=net.NullHandler(),
            )
        )

    loop = asyncio.get_running_loop()
    await dial()
    print(f"warm {await _settled_rss()}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    for _ in range(count):
        await dial()
    print(f"open {await _settled_rss()}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # EOF: the benchmark is done with us
    for link in links:
        await link.aclose()


async def idle_link_memory(
    sim_home: Path, home: Path, host: str, port: int, proxy_pid: int, count: int = 100
) -> IdleLinkMemory:
    """Open ``count`` idle attested links to the proxy from a dialer process; KiB per link per end."""
    argv = [sys.executable, "-m", __name__, str(sim_home), str(home), host, str(port), str(count)]
    child = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdin is not None and child.stdout is not None
    stdout = child.stdout

    async def reading(word: str) -> int:
        line = (await asyncio.wait_for(stdout.readline(), 60)).decode().split()
        if len(line) != 2 or line[0] != word:
            raise RuntimeError(f"idle-link dialer said {line!r}, expected {word!r}")
        return int(line[1])

    try:
        dialer_before = await reading("warm")
        proxy_before = rss_kib(proxy_pid)
        child.stdin.write(b"open\n")
        await child.stdin.drain()
        dialer_after = await reading("open")
        await asyncio.sleep(0.2)  # the proxy's last hellos
        proxy_after = rss_kib(proxy_pid)
    finally:
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 10)
        except TimeoutError:
            child.kill()
            await child.wait()
    return IdleLinkMemory(
        links=count,
        proxy_kib=round((proxy_after - proxy_before) / count, 1),
        dialer_kib=round((dialer_after - dialer_before) / count, 1),
    )


if __name__ == "__main__":
    if len(sys.argv) != 6 or not (sys.argv[4].isdigit() and sys.argv[5].isdigit()):
        sys.exit("usage: python -m cocoon.localnet.bench.idlelinks SIM_HOME HOME HOST PORT COUNT")
    sim, node_home, address, port_text, count_text = sys.argv[1:]
    eventloop.run(_hold(Path(sim), Path(node_home), address, int(port_text), int(count_text)))
