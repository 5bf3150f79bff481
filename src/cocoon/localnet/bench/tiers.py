"""Cocoon's three tiers as processes for the gateway benchmark, in two layouts.

``separate``: ``cocoon proxy``, ``cocoon worker`` and ``cocoon client`` each in its own process (a
machine per node in a real deployment), configured by TOML files, trusting each other through one
simulated TEE platform. ``one``: the in-process :class:`LocalNetwork` of ``cocoon bench gateway`` in
one child process (:mod:`cocoon.localnet.bench.onenet`). Either way the benchmark's own process holds
only the load generator, so the CPU read from ``/proc`` of these processes is the middle's alone.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from cocoon import tee
from cocoon.localnet.bench.processes import Child, Layout, free_port, stop_all, wait_for

__all__ = ["CocoonChain", "toml_section"]

CREDIT_NANO = 1000 * 10**9  # test credit the proxy grants the bench client (no chain, no real value)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def toml_section(section: str, values: dict[str, Any]) -> str:
    """``[section]`` with scalar and list keys, then one ``[section.name]`` table per dict value."""
    lines = [f"[{section}]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for name, table in values.items():
        if isinstance(table, dict):
            lines.append(f"[{section}.{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


class CocoonChain:
    """client → proxy → worker in front of ``upstream_url``, in the given layout, under ``root``."""

    def __init__(
        self,
        root: Path,
        upstream_url: str,
        layout: Layout,
        *,
        max_active: int,
        upstream_ready: asyncio.Event,
        e2ee: str = "auto",
        engine: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        # The worker's [worker.engine] table (separate layout): the HTTP upstream unless given.
        self.engine = engine or {"kind": "http", "url": upstream_url}
        self.e2ee = e2ee  # the client's mode: "auto" seals every request for the worker; "off" not
        self.upstream_url = upstream_url
        self.upstream_ready = upstream_ready  # a worker checks its upstream at start: launched after
        self.layout = layout
        self.max_active = max_active
        self.children: list[Child] = []
        self.base_url = ""  # the client's OpenAI base URL, once started
        self.proxy_client_port = 0  # where clients dial the proxy (separate layout), once started

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self.children]

    @property
    def tier_pids(self) -> dict[str, int]:
        """Each tier's process (``client``, ``proxy``, ``worker``); empty in the one-process layout."""
        if self.layout == "one":
            return {}
        return {child.name.removeprefix("cocoon-"): child.pid for child in self.children}

    @property
    def sim_home(self) -> Path:
        return self.root / "sim"

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.layout == "one":
            if self.e2ee != "auto":
                raise ValueError("the one-process layout runs the client's default e2ee only")
            await self._start_one()
        else:
            await self._start_separate()

    def stop(self) -> None:
        stop_all(self.children)

    async def _start_one(self) -> None:
        url_file = self.root / "client.url"
        await self.upstream_ready.wait()
        argv = [sys.executable, "-m", "cocoon.localnet.bench.onenet", str(url_file), self.upstream_url]
        argv += [str(self.root / "net"), str(self.max_active)]
        self.children.append(Child("cocoon-one-process", argv, self.root / "onenet.log").start())

        async def published() -> bool:
            return url_file.exists()

        await wait_for(published, what="the one-process network to start", watch=self.children)
        self.base_url = url_file.read_text().strip()

    def _node(self, role: str, values: dict[str, Any]) -> Child:
        sim = {"backend": "sim", "peer_policy": "sim", "sim_home": str(self.sim_home)}
        config = self.root / f"{role}.toml"
        config.write_text(toml_section(role, {"home": str(self.root / role), **values, "tee": sim}))
        argv = [sys.executable, "-m", "cocoon.cli.main", role, "--config", str(config)]
        child = Child(f"cocoon-{role}", argv, self.root / f"{role}.log").start()
        self.children.append(child)
        return child

    async def _start_separate(self) -> None:
        tee.sim_platform(self.sim_home)  # one platform, made before any node reads it
        worker_port, client_port, stats_port, http_port = (free_port() for _ in range(4))
        self._node(
            "proxy",
            {
                "host": "127.0.0.1",
                "worker_port": worker_port,
                "client_port": client_port,
                "stats_port": stats_port,
                "test_credit_nano": CREDIT_NANO,
            },
        )
        self.proxy_client_port = client_port
        client = {
            "http_host": "127.0.0.1",
            "http_port": http_port,
            "owner_address": "bench-client",
            "e2ee": self.e2ee,
        }
        self._node("client", {**client, "proxies": [f"127.0.0.1:{client_port}"]})
        engine = self.engine
        worker = {"proxies": [f"127.0.0.1:{worker_port}"], "owner_address": "bench-worker"}
        await self.upstream_ready.wait()
        self._node(
            "worker",
            {**worker, "health_port": free_port(), "max_active_requests": self.max_active, "engine": engine},
        )
        self.base_url = f"http://127.0.0.1:{http_port}/v1"
        async with httpx.AsyncClient(timeout=2) as http:

            async def serving() -> bool:
                stats = (await http.get(f"http://127.0.0.1:{stats_port}/stats")).json()
                if stats["state"] != "running" or stats["workers"]["count"] < 1:
                    return False
                models = (await http.get(f"{self.base_url}/models")).json()
                return bool(models.get("data"))

            await wait_for(serving, what="proxy, worker and client to connect", watch=self.children)
